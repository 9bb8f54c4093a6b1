package pgplane

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// topologyFileIn writes the test topology, edited by edit unless nil, to
// t.yaml in a new directory, and returns the directory and the file.
func topologyFileIn(t *testing.T, edit func(string) string) (dir, path string) {
	t.Helper()
	data, err := os.ReadFile("testdata/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if edit != nil {
		text = edit(text)
	}
	dir = t.TempDir()
	path = filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// parsePlugin parses `pgplane PATH { block }` and opens its state, as setup
// does before the first load.
func parsePlugin(t *testing.T, path, block string) *PGPlane {
	t.Helper()
	p, err := parse(caddy.NewTestController("dns", "pgplane "+path+" {\n"+block+"\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.openStore(); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadPlugin is parsePlugin and the first load of the topology.
func loadPlugin(t *testing.T, path, block string) *PGPlane {
	t.Helper()
	p := parsePlugin(t, path, block)
	if err := p.topo.load(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseOptions(t *testing.T) {
	_, topo := topologyFileIn(t, nil)
	cases := []struct {
		input string
		err   string
	}{
		{"pgplane " + topo, ""},
		{"pgplane " + topo + " {\n ttl 30\n reload 0\n ns a.example.net b.example.net\n}", ""},
		{"pgplane", "Wrong argument count"},
		{"pgplane a b", "Wrong argument count"},
		{"pgplane " + topo + " {\n ttl 0\n}", "ttl"},
		{"pgplane " + topo + " {\n ttl five\n}", "ttl"},
		{"pgplane " + topo + " {\n reload soon\n}", "reload"},
		{"pgplane " + topo + " {\n ns\n}", "Wrong argument count"},
		{"pgplane " + topo + " {\n colour blue\n}", `unknown property "colour"`},
	}
	for _, tc := range cases {
		c := caddy.NewTestController("dns", tc.input)
		p, err := parse(c)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tc.input, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: want error containing %q, got %v", tc.input, tc.err, err)
		case tc.err == "" && strings.Contains(tc.input, "ttl 30"):
			if p.opts.ttl != 30 || p.topo.interval != 0 || len(p.opts.ns) != 2 || p.opts.ns[1] != "b.example.net." {
				t.Errorf("options not applied: %+v interval %s", p.opts, p.topo.interval)
			}
		case tc.err == "":
			if p.opts.ttl != defaultTTL || p.topo.interval != defaultReload || p.opts.ns[0] != defaultNS {
				t.Errorf("defaults not applied: %+v", p.opts)
			}
		}
	}
}

// SPEC: T6
func TestSetupRefusesInvalidTopology(t *testing.T) {
	_, path := topologyFileIn(t, func(s string) string { return strings.Replace(s, "127.0.1.0/28", "127.0.1.0/29", 1) })
	err := setup(caddy.NewTestController("dns", "pgplane "+path))
	if err == nil || !strings.Contains(err.Error(), "T6") {
		t.Fatalf("want the T6 violation at startup, got %v", err)
	}
}

// SPEC: D5
func TestTopologyFileReload(t *testing.T) {
	_, path := topologyFileIn(t, nil)
	p := loadPlugin(t, path, "")
	first := p.answers.Load()
	if err := p.topo.load(); err != nil || p.answers.Load() != first {
		t.Fatalf("an unchanged file must not make new answers (err %v)", err)
	}
	hub := p.answers.Load().snap.VNet("hub-vnet").Index
	data, _ := os.ReadFile(path)
	linked := strings.Replace(string(data), "links: [app-vnet, custom-vnet]", "links: [app-vnet, custom-vnet, hub-vnet]", 1)
	os.WriteFile(path, []byte(linked), 0o644)
	os.Chtimes(path, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if !p.topo.changed() {
		t.Fatal("the change must be seen")
	}
	if err := p.topo.load(); err != nil {
		t.Fatal(err)
	}
	next := p.answers.Load()
	if next.snap.Serial <= first.snap.Serial {
		t.Fatalf("serial must increase: %d then %d", first.snap.Serial, next.snap.Serial)
	}
	if !next.snap.Zones["contoso.private.postgres.database.azure.com"].LinkedTo(hub) {
		t.Fatal("the new link must be in the new snapshot")
	}
}

// BenchmarkReload measures reloads of the topology file named by
// PGPLANE_BENCH_TOPOLOGY (make bench-dns generates a 10,000-server one):
// read, parse, validate, snapshot and answers. "cold" is the first load of
// the file; "edit" is a reload after one zone link changed, which decodes
// only the changed part.
func BenchmarkReload(b *testing.B) {
	path := os.Getenv("PGPLANE_BENCH_TOPOLOGY")
	if path == "" {
		b.Skip("PGPLANE_BENCH_TOPOLOGY is not set")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	live := filepath.Join(b.TempDir(), "topology.yaml")
	edited := []byte(strings.Replace(string(data), "links: [vnet-000, vnet-250]", "links: [vnet-000, vnet-250, vnet-001]", 1))
	b.Run("cold", func(b *testing.B) {
		os.WriteFile(live, data, 0o644)
		b.ReportAllocs()
		for b.Loop() {
			p, err := parse(caddy.NewTestController("dns", "pgplane "+live))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.topo.load(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("edit", func(b *testing.B) {
		os.WriteFile(live, data, 0o644)
		p, err := parse(caddy.NewTestController("dns", "pgplane "+live))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.topo.load(); err != nil {
			b.Fatal(err)
		}
		versions := [][]byte{edited, data}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			b.StopTimer()
			os.WriteFile(live, versions[i%2], 0o644)
			i++
			b.StartTimer()
			if err := p.topo.load(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestParseGatewayOptions(t *testing.T) {
	_, topo := topologyFileIn(t, nil)
	for _, tc := range []struct{ block, err string }{
		{"gateway 127.0.0.1:15432 127.0.0.2:15432\n gateway_tls dev tls\n gateway_backend_tls verify-full ca.pem\n gateway_max_connections 10\n gateway_max_connections_per_source 4\n gateway_pool_size 0\n gateway_pool_idle_timeout 30s\n gateway_handshake_timeout 3s\n gateway_trusted_proxies 10.0.0.0/8\n node_id 5\n gateway_auth_user pgplane_auth auth.pgpass\n gateway_auth_cache 30s", ""},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth maybe", "gateway_auth: want terminate or passthrough"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth_user pgplane_auth", "gateway_auth_user: want ROLE PASSWORD_FILE"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth_user 9lives f", "not a role name"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n cluster_monitor_user pgplane_monitor", "cluster_monitor_user: want ROLE PASSWORD_FILE"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n cluster_monitor_user 9lives f", "cluster_monitor_user: \"9lives\" is not a role name"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth_cache forever", "gateway_auth_cache"},
		{"gateway 127.0.0.1:15432", "gateway needs gateway_tls"},
		{"gateway localhost:5432\n gateway_tls dev tls", "want IP:port"},
		{"gateway 127.0.0.1:1\n gateway_tls a", "gateway_tls"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_backend_tls maybe", "gateway_backend_tls"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n node_id 200", "node_id"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_trusted_proxies nope", "CIDR"},
	} {
		p, err := parse(caddy.NewTestController("dns", "pgplane "+topo+" {\n "+tc.block+"\n}"))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.block, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: want %q, got %v", tc.block, tc.err, err)
		case tc.err == "":
			o := p.gwOpts
			if len(o.listen) != 2 || o.devDir != "tls" || o.backendCA != "ca.pem" || o.maxConns != 10 || o.perSource != 4 || o.poolSize != -1 || o.poolIdle != 30*time.Second || o.handshake != 3*time.Second || o.nodeID != 5 || len(o.trusted) != 1 ||
				o.authRole != "pgplane_auth" || o.authFile != "auth.pgpass" || o.authCache != 30*time.Second {
				t.Errorf("options not applied: %+v", o)
			}
		}
	}
}

func TestParseClusterOptions(t *testing.T) {
	_, topo := topologyFileIn(t, nil)
	for _, tc := range []struct{ block, err string }{
		{"cluster_name n1\n cluster_members n1 n2 n3\n cluster_bind 127.0.0.11:7946\n cluster_join 127.0.0.12:7946\n cluster_dev\n cluster_probe_interval 200ms\n cluster_fail_after 3\n cluster_gateway_port 15432", ""},
		{"cluster_bind localhost", "cluster_bind"},
		{"cluster_probe_interval soon", "cluster_probe_interval"},
		{"cluster_dev yes", "Wrong argument count"},
		{"cluster_colour blue", `unknown property "cluster_colour"`},
		{"cluster_members", "a value is required"},
	} {
		p, err := parse(caddy.NewTestController("dns", "pgplane "+topo+" {\n "+tc.block+"\n}"))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.block, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: want %q, got %v", tc.block, tc.err, err)
		case tc.err == "":
			o := p.clOpts
			if o.name != "n1" || len(o.members) != 3 || !o.dev || o.interval != 200*time.Millisecond || o.failAfter != 3 || o.gwPort != 15432 {
				t.Errorf("options not applied: %+v", o)
			}
		}
	}
}

// SPEC: D1
func TestEmptyTopologyFileRefused(t *testing.T) {
	_, path := topologyFileIn(t, nil)
	p := loadPlugin(t, path, "")
	first := p.answers.Load()
	os.WriteFile(path, nil, 0o644) // a rewrite caught between truncate and write
	if err := p.topo.load(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty file must be refused, got %v", err)
	}
	if p.answers.Load() != first {
		t.Fatal("the previous topology must keep serving")
	}
}

// SPEC: D10
func TestBlockedFlipReportedOnce(t *testing.T) {
	_, path := topologyFileIn(t, func(s string) string { return strings.Replace(s, "lock: none", "lock: ReadOnly", 1) })
	p := loadPlugin(t, path, "")
	count := func() float64 { return testutil.ToFloat64(recordBlocked.WithLabelValues("orders-db")) }
	before := count()
	failed := topology.State{FailedOver: map[string]bool{"orders-db": true}}
	p.topo.setState(failed)
	if !p.answers.Load().snap.Servers["orders-db"].RecordBlocked {
		t.Fatal("the ReadOnly lock must block the record flip")
	}
	// Later changes of state (another region's flip, a peer re-applying the
	// same decisions) must not count the same blocked flip again.
	p.topo.setState(topology.State{FailedOver: failed.FailedOver, ActiveGateway: map[string]int{"eastus2": 1}})
	p.topo.setState(failed)
	if got := count() - before; got != 1 {
		t.Fatalf("one blocked failover must be counted once, counted %v", got)
	}
}

// SPEC: G3
func TestDevCertificateFollowsNewZones(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	p := loadPlugin(t, path, "gateway 127.0.0.1:0\ngateway_tls dev "+filepath.Join(dir, "tls")+"\ngateway_auth passthrough")
	if err := p.newGateway(p.gwOpts, p.base, p.answers.Load().snap); err != nil {
		t.Fatal(err)
	}
	leaf := func() []string {
		pem, _ := os.ReadFile(filepath.Join(dir, "tls", gateway.DevCertFile))
		block, _ := pemDecode(pem)
		c, err := x509.ParseCertificate(block)
		if err != nil {
			t.Fatal(err)
		}
		return c.DNSNames
	}
	if slices.Contains(leaf(), "*.new.private.postgres.database.azure.com") {
		t.Fatal("the new zone is not in the topology yet")
	}
	data, _ := os.ReadFile(path)
	withZone := strings.Replace(string(data), "privateDnsZones:\n", "privateDnsZones:\n  - {name: new.private.postgres.database.azure.com, links: [hub-vnet]}\n", 1)
	os.WriteFile(path, []byte(withZone), 0o644)
	if err := p.topo.load(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(leaf(), "*.new.private.postgres.database.azure.com") {
		t.Fatalf("the dev certificate must be re-issued for the new zone, names %v", leaf())
	}
}

func pemDecode(b []byte) ([]byte, []byte) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, rest
	}
	return block.Bytes, rest
}

// Two changes made at once on two nodes can each pass alone and break a
// rule together. Every node then refuses the combination alike, keeps
// serving what it had, says so, and takes the change that mends it (C5).
//
// SPEC: C5 Z2
func TestConflictingPeerChangesKeepTheLastGoodState(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	p := loadPlugin(t, path, "state "+filepath.Join(dir, "state"))
	// Node a made a zone billing.postgres.database.azure.com; node b, at
	// the same time, a server called billing (Z2).
	peer, _ := cluster.OpenStore(cluster.StoreConfig{Node: "n2", Dir: filepath.Join(dir, "peer")})
	zone, _ := peer.Commit(map[string]json.RawMessage{topology.ZoneKey("billing.postgres.database.azure.com"): json.RawMessage(`{}`)})
	server, _ := peer.Commit(map[string]json.RawMessage{topology.ServerKey("billing"): json.RawMessage(`{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"}}`)})
	p.topo.store.Merge(zone)
	p.topo.storeChanged()
	withZone := p.answers.Load().snap
	if withZone.Zones["billing.postgres.database.azure.com"] == nil || p.topo.conflictErr() != nil {
		t.Fatal("the zone alone must be served")
	}
	p.topo.store.Merge(server)
	p.topo.storeChanged()
	if p.answers.Load().snap != withZone {
		t.Fatal("a combination that breaks a rule must not be served")
	}
	if err := p.topo.conflictErr(); err == nil || !strings.Contains(err.Error(), "Z2") {
		t.Fatalf("the conflict must be reported with its rule: %v", err)
	}
	if testutil.ToFloat64(stateConflict) != 1 {
		t.Fatal("coredns_pgplane_state_conflict must be 1 during a conflict")
	}
	if h := p.health(); !strings.Contains(h.State.Conflict, "Z2") {
		t.Fatalf("health must show the conflict: %+v", h.State)
	}
	// Any change is checked against the combination, so the one that
	// mends it is the one that goes through.
	if _, err := p.topo.change(map[string]json.RawMessage{topology.FirewallRuleKey("reports-db", "x"): json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}`)}); err == nil {
		t.Fatal("a change on top of a conflict must be refused with the conflict's rule")
	}
	if _, err := p.topo.change(map[string]json.RawMessage{topology.ServerKey("billing"): nil}); err != nil {
		t.Fatalf("deleting one side must mend it: %v", err)
	}
	if p.topo.conflictErr() != nil || testutil.ToFloat64(stateConflict) != 0 || p.answers.Load().snap.Zones["billing.postgres.database.azure.com"] == nil {
		t.Fatal("after the mend the zone is served and no conflict remains")
	}
}

// A node restarting with conflicting run-time changes on disk (kept from two
// concurrent changes) still starts: it serves the file alone, reports the
// conflict, and serves everything again once a change mends it.
//
// SPEC: C5 Z2
func TestStartWithConflictingStateServesTheFile(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	stateDir := filepath.Join(dir, "state")
	st, _ := cluster.OpenStore(cluster.StoreConfig{Node: "n2", Dir: filepath.Join(dir, "peer")})
	entries, _ := st.Commit(map[string]json.RawMessage{
		topology.ZoneKey("billing.postgres.database.azure.com"): json.RawMessage(`{}`),
		topology.ServerKey("billing"):                           json.RawMessage(`{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"}}`),
	})
	disk, _ := cluster.OpenStore(cluster.StoreConfig{Node: "n1", Dir: stateDir})
	disk.Merge(entries)

	p := parsePlugin(t, path, "state "+stateDir)
	if err := p.topo.load(); err != nil {
		t.Fatalf("a node must start despite conflicting run-time changes: %v", err)
	}
	snap := p.answers.Load().snap
	if snap.Servers["billing"] != nil || snap.Zones["billing.postgres.database.azure.com"] != nil || snap.Servers["reports-db"] == nil {
		t.Fatal("the file alone must be served")
	}
	if err := p.topo.conflictErr(); err == nil || !strings.Contains(err.Error(), "Z2") || testutil.ToFloat64(stateConflict) != 1 {
		t.Fatalf("the conflict must be reported: %v", err)
	}
	if _, err := p.topo.change(map[string]json.RawMessage{topology.ServerKey("billing"): nil}); err != nil {
		t.Fatalf("the mending change: %v", err)
	}
	if p.answers.Load().snap.Zones["billing.postgres.database.azure.com"] == nil || p.topo.conflictErr() != nil || testutil.ToFloat64(stateConflict) != 0 {
		t.Fatal("after the mend, the run-time changes are served and no conflict stands")
	}
}
