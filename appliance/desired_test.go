package appliance

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// devTopology is the topology of the dev Corefile, which make run serves.
const devTopology = "../corefile/dev/topology.yaml"

// topologyFileIn writes the dev topology, edited by edit unless nil, to
// t.yaml in a new directory, and returns the directory and the file.
func topologyFileIn(t *testing.T, edit func(string) string) (dir, path string) {
	t.Helper()
	data, err := os.ReadFile(devTopology)
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

// testOptions are the defaults for path, changed by edit unless nil.
func testOptions(path string, edit func(*Options)) Options {
	o := NewOptions(path, "")
	if edit != nil {
		edit(&o)
	}
	return o
}

// newTestAppliance makes an appliance over path, not started.
func newTestAppliance(t *testing.T, path string, edit func(*Options)) *Appliance {
	t.Helper()
	a, err := New(testOptions(path, edit), nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// SPEC: D5
func TestTopologyFileReload(t *testing.T) {
	_, path := topologyFileIn(t, nil)
	a := newTestAppliance(t, path, nil)
	first := a.Snapshot()
	if err := a.desired.load(); err != nil || a.Snapshot() != first {
		t.Fatalf("an unchanged file must not make a new snapshot (err %v)", err)
	}
	hub := a.Snapshot().VNet("hub-vnet").Index
	data, _ := os.ReadFile(path)
	linked := strings.Replace(string(data), "links: [app-vnet, custom-vnet]", "links: [app-vnet, custom-vnet, hub-vnet]", 1)
	os.WriteFile(path, []byte(linked), 0o644)
	os.Chtimes(path, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if !a.desired.changed() {
		t.Fatal("the change must be seen")
	}
	if err := a.desired.load(); err != nil {
		t.Fatal(err)
	}
	next := a.Snapshot()
	if next.Serial <= first.Serial {
		t.Fatalf("serial must increase: %d then %d", first.Serial, next.Serial)
	}
	if !next.Zones["contoso.private.postgres.database.azure.com"].LinkedTo(hub) {
		t.Fatal("the new link must be in the new snapshot")
	}
}

// BenchmarkReload measures reloads of the topology file named by
// PGPLANE_BENCH_TOPOLOGY (make bench-dns generates a 10,000-server one):
// read, parse, validate and snapshot. "cold" is the first load of
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
			if _, err := New(NewOptions(live, ""), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("edit", func(b *testing.B) {
		os.WriteFile(live, data, 0o644)
		a, err := New(NewOptions(live, ""), nil)
		if err != nil {
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
			if err := a.desired.load(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// SPEC: D1
func TestEmptyTopologyFileRefused(t *testing.T) {
	_, path := topologyFileIn(t, nil)
	a := newTestAppliance(t, path, nil)
	first := a.Snapshot()
	os.WriteFile(path, nil, 0o644) // a rewrite caught between truncate and write
	if err := a.desired.load(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty file must be refused, got %v", err)
	}
	if a.Snapshot() != first {
		t.Fatal("the previous topology must keep serving")
	}
}

// SPEC: D10
func TestBlockedFlipReportedOnce(t *testing.T) {
	_, path := topologyFileIn(t, func(s string) string { return strings.Replace(s, "lock: none", "lock: ReadOnly", 1) })
	a := newTestAppliance(t, path, nil)
	count := func() float64 { return testutil.ToFloat64(recordBlocked.WithLabelValues("orders-db")) }
	before := count()
	failed := topology.State{FailedOver: map[string]bool{"orders-db": true}}
	a.desired.setState(failed)
	if !a.Snapshot().Server("orders-db").RecordBlocked {
		t.Fatal("the ReadOnly lock must block the record flip")
	}
	// Later changes of state (another region's flip, a peer re-applying the
	// same decisions) must not count the same blocked flip again.
	a.desired.setState(topology.State{FailedOver: failed.FailedOver, ActiveGateway: map[string]int{"eastus2": 1}})
	a.desired.setState(failed)
	if got := count() - before; got != 1 {
		t.Fatalf("one blocked failover must be counted once, counted %v", got)
	}
}

// SPEC: G3
func TestDevCertificateFollowsNewZones(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	a := newTestAppliance(t, path, func(o *Options) {
		o.Gateway = GatewayOptions{Listen: []string{"127.0.0.1:0"}, DevDir: filepath.Join(dir, "tls"), Auth: gateway.AuthPassthrough}
	})
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
	if err := a.desired.load(); err != nil {
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

// A node restarting with a topology file edited while it was down, which
// the committed run-time changes break a rule with, still starts: it serves
// the file alone, reports the conflict, refuses changes on top of it, and
// serves everything again once a change mends it.
//
// SPEC: C5 Z2
func TestStartWithConflictingStateServesTheFile(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	stateDir := filepath.Join(dir, "state")
	withState := func(o *Options) { o.State.Dir = stateDir }
	a := startTestAppliance(t, path, withState)
	zone := topology.ZoneKey("billing.postgres.database.azure.com")
	if err := a.Change(map[string]json.RawMessage{zone: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("creating the zone: %v", err)
	}
	if a.Snapshot().Zones["billing.postgres.database.azure.com"] == nil {
		t.Fatal("an acknowledged change must be served at once")
	}
	a.Stop()
	// While the node is down, its file gains a server called billing: with
	// the zone it breaks Z2.
	data, _ := os.ReadFile(path)
	os.WriteFile(path, append(data, []byte("  - {name: billing, region: eastus2, access: public, backends: {primary: \"127.0.0.1:5432\"}}\n")...), 0o644)

	a = startTestAppliance(t, path, withState)
	defer a.Stop()
	snap := a.Snapshot()
	if snap.Server("billing") == nil || snap.Zones["billing.postgres.database.azure.com"] != nil || snap.Server("reports-db") == nil {
		t.Fatal("the file alone must be served")
	}
	if err := a.desired.conflictErr(); err == nil || !strings.Contains(err.Error(), "Z2") || testutil.ToFloat64(stateConflict) != 1 {
		t.Fatalf("the conflict must be reported: %v", err)
	}
	if h := a.Health(); !strings.Contains(h.State.Conflict, "Z2") {
		t.Fatalf("health must show the conflict: %+v", h.State)
	}
	// Any change is checked against the combination, so the one that
	// mends it is the one that goes through.
	if err := a.Change(map[string]json.RawMessage{topology.FirewallRuleKey("reports-db", "x"): json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}`)}); err == nil {
		t.Fatal("a change on top of a conflict must be refused with the conflict's rule")
	}
	if err := a.Change(map[string]json.RawMessage{topology.ServerKey("billing"): nil}); err != nil {
		t.Fatalf("the mending change: %v", err)
	}
	if a.Snapshot().Zones["billing.postgres.database.azure.com"] == nil || a.desired.conflictErr() != nil || testutil.ToFloat64(stateConflict) != 0 {
		t.Fatalf("after the mend, the run-time changes are served and no conflict stands: zone %v, conflict %v, metric %v", a.Snapshot().Zones["billing.postgres.database.azure.com"] != nil, a.desired.conflictErr(), testutil.ToFloat64(stateConflict))
	}
}

// startTestAppliance makes and starts an appliance over path; the test
// stops it.
func startTestAppliance(t *testing.T, path string, edit func(*Options)) *Appliance {
	t.Helper()
	a := newTestAppliance(t, path, edit)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// A change is served when its write returns: the snapshot read right after
// holds it, every time (A1, C5).
//
// SPEC: C5 A1
func TestAcknowledgedChangeIsServed(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	a := startTestAppliance(t, path, func(o *Options) { o.State.Dir = filepath.Join(dir, "state") })
	defer a.Stop()
	for i := range 100 {
		rule := fmt.Sprintf("r%d", i)
		if err := a.Change(map[string]json.RawMessage{topology.FirewallRuleKey("reports-db", rule): json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}`)}); err != nil {
			t.Fatal(err)
		}
		si := a.Snapshot().Server("reports-db")
		if si == nil || !slices.ContainsFunc(si.Server.FirewallRules, func(r topology.FirewallRule) bool { return r.Name == rule }) {
			t.Fatalf("change %d acknowledged but not served", i)
		}
	}
}

// Changes of VNets and zones alone are served at the cost of those: a new
// VNet's view answers for its addresses, the servers of VNets the change
// did not touch keep their views, a server's VNet or zone changed is
// indexed again, an occupied subnet's new CIDR is refused (T10), a zone
// linked to a VNet is seen from it, and the snapshot served is the one made
// from scratch for the same topology.
//
// SPEC: D4 D5 T10 A1
func TestNetworkChangesServedAtTheirCost(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	a := startTestAppliance(t, path, func(o *Options) { o.State.Dir = filepath.Join(dir, "state") })
	defer a.Stop()
	change := func(key, value string) error {
		v := json.RawMessage(value)
		if value == "" {
			v = nil
		}
		return a.Change(map[string]json.RawMessage{key: v})
	}
	before := a.Snapshot().Server("orders-db")
	if err := change(topology.VNetKey("new-vnet"), `{"region":"eastus2","addressSpaces":["127.0.9.0/24"],"resolverAddress":"127.0.9.250"}`); err != nil {
		t.Fatal(err)
	}
	snap := a.Snapshot()
	view := snap.ViewOf(netip.Addr{}, netip.MustParseAddr("127.0.9.7"))
	if view < 0 || snap.VNets[view].Name != "new-vnet" {
		t.Fatalf("an address of the new VNet is in view %d", view)
	}
	if si := snap.Server("orders-db"); si != before {
		t.Fatal("a server of a VNet the change did not touch was indexed again")
	}
	for _, c := range []struct{ key, value string }{
		{topology.SubnetKey("new-vnet", "db"), `{"cidr":"127.0.9.0/28","delegation":"Microsoft.DBforPostgreSQL/flexibleServers"}`},
		{topology.ServerKey("new-db"), `{"region":"eastus2","access":"private","network":{"vnet":"new-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"127.0.9.4"},"backends":{"primary":"127.0.9.4:5432"}}`},
		{topology.VNetKey("new-vnet"), `{"region":"eastus2","addressSpaces":["127.0.9.0/24","127.0.10.0/24"],"resolverAddress":"127.0.9.250"}`},
	} {
		if err := change(c.key, c.value); err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
	}
	snap = a.Snapshot()
	si := snap.Server("new-db")
	if si == nil || si.VNet.Name != "new-vnet" || snap.VNets[si.VNet.Index] != si.VNet || len(si.VNet.Spaces) != 2 {
		t.Fatalf("the server of a changed VNet points at a stale view: %+v", si)
	}
	err := change(topology.SubnetKey("new-vnet", "db"), `{"cidr":"127.0.9.16/28","delegation":"Microsoft.DBforPostgreSQL/flexibleServers"}`)
	if vs := (topology.Violations{}); !errors.As(err, &vs) || vs[0].Rule != "T10" {
		t.Fatalf("an occupied subnet's CIDR changed: %v", err)
	}
	if a.Snapshot() != snap {
		t.Fatal("a refused change changed the snapshot")
	}
	const zone = "contoso.private.postgres.database.azure.com"
	for _, c := range []struct{ key, value string }{
		{topology.ZoneKey("fabrikam.private.postgres.database.azure.com"), `{}`},
		{topology.LinkKey("fabrikam.private.postgres.database.azure.com", "new-vnet"), `{}`},
		{topology.LinkKey(zone, "new-vnet"), `{}`},
	} {
		if err := change(c.key, c.value); err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
	}
	snap = a.Snapshot()
	newView := snap.ViewOf(netip.Addr{}, netip.MustParseAddr("127.0.9.7"))
	for _, z := range []string{zone, "fabrikam.private.postgres.database.azure.com"} {
		if zi := snap.Zones[z]; zi == nil || !zi.LinkedTo(newView) {
			t.Fatalf("zone %s is not seen from the VNet it was linked to", z)
		}
	}
	if si := snap.Server("new-db"); si.Zone != snap.Zones[zone] {
		t.Fatal("a server of a zone indexed anew points at a stale zone")
	}
	fresh, err := topology.NewSnapshot(snap.Topology, snap.State, snap.Serial)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range snap.Servers() {
		want := fresh.Server(name)
		if got.Address != want.Address || got.Backend() != want.Backend() || (got.VNet == nil) != (want.VNet == nil) ||
			got.VNet != nil && (got.VNet.Index != want.VNet.Index || got.Zone.Name != want.Zone.Name) {
			t.Errorf("server %s: served %+v, from scratch %+v", name, got, want)
		}
	}
	for _, addr := range []string{"127.0.1.9", "127.0.9.9", "127.0.10.9", "127.0.2.9"} {
		a := netip.MustParseAddr(addr)
		if got, want := snap.ViewOf(netip.Addr{}, a), fresh.ViewOf(netip.Addr{}, a); got != want {
			t.Errorf("view of %s: served %d, from scratch %d", addr, got, want)
		}
	}
}
