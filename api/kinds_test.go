package api

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// memoryDesired is a desired state in memory: each change is laid over the
// current topology and checked with topology's rules, as the appliance does.
type memoryDesired struct {
	mu   sync.Mutex
	snap *topology.Snapshot
}

func (d *memoryDesired) Snapshot() *topology.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snap
}

func (d *memoryDesired) Change(changes map[string]json.RawMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next, problems := topology.Overlay(d.snap.Topology, changes)
	if len(problems) > 0 {
		return problems[0]
	}
	vs := topology.CheckTransition(d.snap.Topology, next)
	if state, _ := topology.Validate(next); len(state)+len(vs) > 0 {
		return append(vs, state...)
	}
	snap, err := topology.NewSnapshot(next, d.snap.State, d.snap.Serial+1)
	if err != nil {
		return err
	}
	d.snap = snap
	return nil
}

// Every kind answers the same way: create 201, update 200, create-only
// 409 on an existing object, show, list, delete 204, then 404 with the
// kind's words; a child under a missing parent is 404 with the parent's.
//
// SPEC: A1 A2
func TestKindsAnswerAlike(t *testing.T) {
	topo, _, err := topology.Parse("t.yaml", []byte("regions: [{name: eastus2, gateways: [127.0.0.1]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := topology.NewSnapshot(topo, topology.State{}, 1)
	d := &memoryDesired{snap: snap}
	srv, err := New(Config{Listen: "127.0.0.1:0", Snapshot: d.Snapshot, Desired: d, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.http.Handler)
	defer h.Close()
	for _, k := range []struct{ path, list, body, update, missingParent string }{
		{"/v1/vnets/v1", "/v1/vnets", `{"region":"eastus2","addressSpaces":["10.1.0.0/16"]}`, `{"region":"eastus2","addressSpaces":["10.1.0.0/16","10.2.0.0/16"]}`, ""},
		{"/v1/vnets/v1/subnets/s1", "/v1/vnets/v1/subnets", `{"cidr":"10.1.0.0/28"}`, `{"cidr":"10.1.0.16/28"}`, "/v1/vnets/nope/subnets/s1"},
		{"/v1/private-dns-zones/Z1.postgres.database.azure.com.", "/v1/private-dns-zones", `{"links":["v1"]}`, `{"lock":"CanNotDelete"}`, ""},
		{"/v1/servers/db1", "/v1/servers", `{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"}}`, `{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5433"}}`, ""},
		{"/v1/servers/db1/firewall-rules/r1", "/v1/servers/db1/firewall-rules", `{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.2"}`, `{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.3"}`, "/v1/servers/nope/firewall-rules/r1"},
	} {
		steps := []struct {
			method, path, body, header string
			code                       int
			want                       string
		}{
			{"PUT", k.path, k.body, "", 201, ""},
			{"PUT", k.path, k.update, "*", 409, "already exists"},
			{"PUT", k.path, k.update, "", 200, ""},
			{"PUT", k.path, `{"name":"other"}`, "", 400, "the body names"},
			{"GET", k.path, "", "", 200, ""},
			{"GET", k.list, "", "", 200, "["},
		}
		if k.missingParent != "" {
			steps = append(steps, struct {
				method, path, body, header string
				code                       int
				want                       string
			}{"PUT", k.missingParent, k.body, "", 404, `nope\" does not exist`})
		}
		for _, s := range steps {
			code, body := do(t, h.URL, s.method, s.path, s.body, s.header)
			if code != s.code || !strings.Contains(body, s.want) {
				t.Errorf("%s %s: %d %s, want %d with %q", s.method, s.path, code, body, s.code, s.want)
			}
		}
	}
	// Delete in reverse, children first; then each is gone.
	for _, gone := range []struct{ path, words string }{
		{"/v1/servers/db1/firewall-rules/r1", `server \"db1\" has no firewall rule \"r1\"`},
		{"/v1/servers/db1", `server \"db1\" does not exist`},
		{"/v1/private-dns-zones/z1.postgres.database.azure.com", `private DNS zone \"z1.postgres.database.azure.com\" does not exist`},
		{"/v1/vnets/v1/subnets/s1", `vnet \"v1\" has no subnet \"s1\"`},
		{"/v1/vnets/v1", `vnet \"v1\" does not exist`},
	} {
		path := gone.path
		if strings.Contains(path, "private-dns-zones") {
			// Locked CanNotDelete by its update: refused by the rule, then lifted.
			if code, body := do(t, h.URL, "DELETE", path, "", ""); code != 409 || !strings.Contains(body, "locked CanNotDelete") {
				t.Errorf("DELETE a locked zone: %d %s", code, body)
			}
			do(t, h.URL, "PUT", path, `{"lock":"none"}`, "")
		}
		if code, body := do(t, h.URL, "DELETE", path, "", ""); code != 204 {
			t.Errorf("DELETE %s: %d %s", path, code, body)
		}
		if code, body := do(t, h.URL, "GET", path, "", ""); code != 404 || !strings.Contains(body, gone.words) {
			t.Errorf("GET %s after delete: %d %s, want 404 with %s", path, code, body, gone.words)
		}
	}
}
func do(t *testing.T, base, method, path, body, ifNoneMatch string) (int, string) {
	t.Helper()
	header := map[string]string{}
	if ifNoneMatch != "" {
		header["If-None-Match"] = ifNoneMatch
	}
	code, _, text := request(t, method, base+path, "", body, header)
	return code, text
}
