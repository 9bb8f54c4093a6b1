package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/freeport"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

func listener(t *testing.T) net.Listener { return pgtest.NoTLS(t, "127.0.0.1:0") }

type env struct {
	url     string
	standby net.Listener
	mu      sync.Mutex
	snap    *topology.Snapshot
	topo    *topology.Topology
}

func (e *env) snapshot() *topology.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snap
}

// newEnv runs a one-member cluster (its own votes make a quorum) and the API.
func newEnv(t *testing.T, token string) *env {
	primary, standby := listener(t), listener(t)
	gw1 := pgtest.NoTLS(t, "127.0.0.71:0")
	port := gw1.Addr().(*net.TCPAddr).Port
	pgtest.NoTLS(t, fmt.Sprintf("127.0.0.72:%d", port))
	text := fmt.Sprintf(`regions: [{name: eastus2, gateways: [127.0.0.71, 127.0.0.72]}]
servers:
  - {name: sales-db, region: eastus2, access: public, highAvailability: true, backends: {primary: "%s", standby: "%s"}}
  - {name: plain-db, region: eastus2, access: public, backends: {primary: "%s"}}
`, primary.Addr(), standby.Addr(), primary.Addr())
	topo, _, err := topology.Parse("t.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{standby: standby, topo: topo}
	e.snap, _ = topology.NewSnapshot(topo, topology.State{}, 1)
	gossipPort, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	bind := fmt.Sprintf("127.0.0.1:%d", gossipPort)
	node, err := cluster.New(cluster.Config{Name: "a", Members: []string{"a"}, Bind: bind, Dev: true, Logger: zerolog.New(io.Discard),
		Holds: []string{fmt.Sprintf("127.0.0.71:%d", port), fmt.Sprintf("127.0.0.72:%d", port)}, GatewayPort: port},
		cluster.Hooks{Snapshot: e.snapshot, Apply: func(st topology.State) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.snap, _ = topology.NewSnapshot(e.topo, st, e.snap.Serial+1)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	apiPort, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	s, err := New(Config{Listen: addr, Token: token, Snapshot: e.snapshot, Cluster: node, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	e.url = "http://" + addr
	time.Sleep(800 * time.Millisecond) // a few probe rounds
	return e
}

func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	code, _, text := request(t, method, url, token, body, nil)
	return code, text
}

// request sends one request with a bearer token (unless empty) and extra
// headers, and returns the status, the headers and the body.
func request(t *testing.T, method, url, token, body string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// SPEC: A1
func TestTokenRequired(t *testing.T) {
	e := newEnv(t, "s3cret")
	if code, body := call(t, "GET", e.url+"/v1/cluster", "", ""); code != 401 || !strings.Contains(body, "bearer token") {
		t.Fatalf("without a token: %d %s", code, body)
	}
	if code, _ := call(t, "GET", e.url+"/v1/cluster", "wrong", ""); code != 401 {
		t.Fatalf("with a wrong token: %d", code)
	}
	if code, body := call(t, "GET", e.url+"/v1/cluster", "s3cret", ""); code != 200 || !strings.Contains(body, `"quorum": 1`) {
		t.Fatalf("with the token: %d %s", code, body)
	}
	if _, err := New(Config{Listen: "0.0.0.0:8530"}); err == nil || !strings.Contains(err.Error(), "without a token") {
		t.Fatalf("a non-loopback address without a token must be refused: %v", err)
	}
}

// SPEC: C4 A1
func TestFailoverAndFailback(t *testing.T) {
	e := newEnv(t, "")
	code, body := call(t, "POST", e.url+"/v1/servers/sales-db/failover", "", "")
	if code != 200 || !e.snapshot().State.FailedOver["sales-db"] {
		t.Fatalf("failover: %d %s", code, body)
	}
	var view ClusterView
	_, body = call(t, "GET", e.url+"/v1/cluster", "", "")
	json.Unmarshal([]byte(body), &view)
	if len(view.Servers) != 1 || !view.Servers[0].OnStandby || view.Servers[0].Backend != e.snapshot().Server("sales-db").Server.Backends.Standby {
		t.Fatalf("cluster show after failover: %s", body)
	}
	if code, body = call(t, "POST", e.url+"/v1/servers/sales-db/failback", "", ""); code != 200 || e.snapshot().State.FailedOver["sales-db"] {
		t.Fatalf("failback: %d %s", code, body)
	}
	if code, body = call(t, "POST", e.url+"/v1/regions/eastus2/failover", "", `{"to": "127.0.0.72"}`); code != 200 || e.snapshot().Regions["eastus2"].Active.String() != "127.0.0.72" {
		t.Fatalf("region failover: %d %s", code, body)
	}
	if code, _ = call(t, "POST", e.url+"/v1/regions/eastus2/failback", "", ""); code != 200 || e.snapshot().Regions["eastus2"].Active.String() != "127.0.0.71" {
		t.Fatalf("region failback: %d", code)
	}
}

// SPEC: C4 A2
func TestFailoverRefusals(t *testing.T) {
	e := newEnv(t, "")
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/servers/nosuch/failover", "", 404, `server \"nosuch\" does not exist`},
		{"POST", "/v1/servers/plain-db/failover", "", 409, "high availability is off"},
		{"POST", "/v1/regions/mars/failover", "", 404, `region \"mars\" does not exist`},
		{"POST", "/v1/regions/eastus2/failover", `{"to": "10.0.0.1"}`, 400, "not one of its gateway addresses"},
		{"POST", "/v1/regions/eastus2/failover", `{"to": `, 400, "body"},
		{"GET", "/v1/servers/sales-db/failover", "", 405, ""},
	} {
		code, body := call(t, c.method, e.url+c.path, "", c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: got %d %s, want %d %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
	// A failover to a standby that the quorum sees down is refused, and
	// changes nothing.
	e.standby.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, view := call(t, "GET", e.url+"/v1/cluster", "", "")
		if strings.Contains(view, "backend/sales-db/standby") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed standby was never seen down:\n%s", view)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, body := call(t, "POST", e.url+"/v1/servers/sales-db/failover", "", "")
	if code != 409 || !strings.Contains(body, "down") || e.snapshot().State.FailedOver["sales-db"] {
		t.Fatalf("failover to a dead standby: %d %s", code, body)
	}
}
