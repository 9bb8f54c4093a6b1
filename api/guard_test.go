package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgplane/pgplane/internal/syncbuf"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// guardedServer is the API with a token over an in-memory desired state;
// its log is returned.
func guardedServer(t *testing.T) (*httptest.Server, *syncbuf.Buffer) {
	t.Helper()
	topo, _, err := topology.Parse("t.yaml", []byte("regions: [{name: eastus2, gateways: [127.0.0.1]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := topology.NewSnapshot(topo, topology.State{}, 1)
	d := &memoryDesired{snap: snap}
	log := &syncbuf.Buffer{}
	srv, err := New(Config{Listen: "127.0.0.1:0", Token: "s3cret", Snapshot: d.Snapshot, Desired: d, Logger: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.http.Handler)
	t.Cleanup(h.Close)
	return h, log
}

func get(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	return request(t, http.MethodGet, url, token, "", nil)
}

// Wrong tokens from one address are logged; past a few, that address is
// refused with 429 and Retry-After for a while, even with the right token.
//
// SPEC: A1
func TestTokenGuessingRefusedForAWhile(t *testing.T) {
	h, log := guardedServer(t)
	for i := range 3 {
		if code, _, _ := get(t, h.URL+"/v1/servers", "guess"); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	if code, _, _ := get(t, h.URL+"/v1/servers", "s3cret"); code != http.StatusOK {
		t.Fatalf("the right token after three guesses: %d", code)
	}
	for range 4 { // the success cleared them: four more, the fourth earns a delay
		get(t, h.URL+"/v1/servers", "guess")
	}
	code, header, body := get(t, h.URL+"/v1/servers", "s3cret")
	if code != http.StatusTooManyRequests || header.Get("Retry-After") == "" || !strings.Contains(body, "too many wrong tokens from 127.0.0.1") {
		t.Fatalf("after four guesses in a row: %d %v %s", code, header, body)
	}
	if n := strings.Count(log.String(), "admin: wrong or missing token"); n < 4 || !strings.Contains(log.String(), `"client":"127.0.0.1"`) {
		t.Fatalf("the guesses must be logged with their address (%d lines):\n%s", n, log.String())
	}
}

// A body over the limit is refused with 413 and the limit; bad JSON with
// 400 and what is wrong.
//
// SPEC: A1 A2
func TestBodiesOverTheLimitAndBadJSON(t *testing.T) {
	h, _ := guardedServer(t)
	put := func(body string) (int, string) {
		return call(t, http.MethodPut, h.URL+"/v1/servers/db1", "s3cret", body)
	}
	big := `{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"},"firewallRules":[` +
		strings.Repeat(`{"name":"r","startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"},`, 20000) + `{"name":"last","startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}]}`
	if code, body := put(big); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than 1048576 bytes") {
		t.Fatalf("a %d-byte body: %d %s", len(big), code, body)
	}
	if code, body := put(`{"region": "eastus2",`); code != http.StatusBadRequest || !strings.Contains(body, "request body") {
		t.Fatalf("bad JSON: %d %s", code, body)
	}
	if code, body := put(`{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"}}`); code != http.StatusCreated {
		t.Fatalf("a good body after the bad ones: %d %s", code, body)
	}
}
