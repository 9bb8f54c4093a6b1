package topology

import (
	"net/netip"
	"testing"
)

func snapshot(t *testing.T, tp *Topology, st State) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(tp, st, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SPEC: D4 D6
func TestViewOf(t *testing.T) {
	s := snapshot(t, base(t), State{})
	cases := []struct {
		local, remote string
		want          string
	}{
		{"127.0.0.1", "10.0.1.10", "app-vnet"},
		{"127.0.0.1", "10.1.200.1", "hub-vnet"},
		{"127.0.0.1", "10.3.0.255", "far-vnet"},
		{"127.0.0.1", "10.3.1.0", ""},
		{"127.0.0.1", "203.0.113.5", ""},
		{"10.0.0.250", "203.0.113.5", "app-vnet"}, // arrived on app-vnet's resolver address
		{"10.0.0.250", "10.1.0.1", "app-vnet"},
		{"127.0.0.1", "::ffff:10.0.1.10", "app-vnet"},
		{"127.0.0.1", "2001:db8::1", ""},
	}
	for _, c := range cases {
		got := s.ViewOf(netip.MustParseAddr(c.local), netip.MustParseAddr(c.remote))
		name := ""
		if got != PublicView {
			name = s.VNets[got].Name
		}
		if name != c.want {
			t.Errorf("ViewOf(%s, %s) = %q, want %q", c.local, c.remote, name, c.want)
		}
	}
}

// SPEC: D4
func TestViewOfLongestPrefixAndAmbiguousOverlap(t *testing.T) {
	tp := base(t)
	// far-vnet nests inside hub-vnet; both have resolver addresses, so the
	// overlap is allowed but a source in it tells nothing.
	tp.VNets[2].AddressSpaces = []string{"10.1.5.0/24"}
	tp.VNets[2].ResolverAddress = "10.2.0.250"
	tp.VNets[1].ResolverAddress = "10.1.0.250"
	if vs, _ := Validate(tp); len(vs) > 0 {
		t.Fatal(vs)
	}
	s := snapshot(t, tp, State{})
	local := netip.MustParseAddr("127.0.0.1")
	if v := s.ViewOf(local, netip.MustParseAddr("10.1.5.7")); v != PublicView {
		t.Errorf("an address in an overlap must get the public view, got %s", s.VNets[v].Name)
	}
	if v := s.ViewOf(local, netip.MustParseAddr("10.1.6.7")); v == PublicView || s.VNets[v].Name != "hub-vnet" {
		t.Errorf("outside the overlap the /16 holds, got %d", v)
	}
	if v := s.ViewOf(netip.MustParseAddr("10.2.0.250"), netip.MustParseAddr("10.1.5.7")); v == PublicView || s.VNets[v].Name != "far-vnet" {
		t.Errorf("the resolver address tells the overlap apart, got %d", v)
	}
}

// SPEC: T1 D3 C4
func TestSnapshotState(t *testing.T) {
	tp := base(t)
	s := snapshot(t, tp, State{})
	orders := s.Server("orders-db")
	if orders.Address.String() != "10.0.1.4" || orders.Backend() != "10.0.1.4:5432" {
		t.Fatalf("primary: got %s %s", orders.Address, orders.Backend())
	}
	if orders.CNAMETarget() != "orders-db.contoso.private.postgres.database.azure.com" {
		t.Fatalf("cname target %s", orders.CNAMETarget())
	}
	if s.Regions["eastus2"].Active.String() != "192.0.2.10" {
		t.Fatalf("active gateway %s", s.Regions["eastus2"].Active)
	}
	s = snapshot(t, tp, State{ActiveGateway: map[string]int{"eastus2": 1}, FailedOver: map[string]bool{"orders-db": true}})
	if got := s.Server("orders-db").Address.String(); got != "10.0.1.5" {
		t.Fatalf("after failover the record is the standby's, got %s", got)
	}
	if got := s.Regions["eastus2"].Active.String(); got != "192.0.2.11" {
		t.Fatalf("after a gateway flip the secondary is active, got %s", got)
	}
	if !s.Zones["contoso.private.postgres.database.azure.com"].LinkedTo(s.VNet("app-vnet").Index) ||
		s.Zones["contoso.private.postgres.database.azure.com"].LinkedTo(s.VNet("hub-vnet").Index) {
		t.Fatal("zone links wrong")
	}
	if _, err := NewSnapshot(tp, State{ActiveGateway: map[string]int{"eastus2": 2}}, 1); err == nil {
		t.Fatal("an active index past the region's gateways must be refused")
	}
}

// SPEC: D10
func TestReadOnlyLockBlocksRecordFlip(t *testing.T) {
	tp := base(t)
	tp.PrivateDNSZones[0].Lock = LockReadOnly
	s := snapshot(t, tp, State{FailedOver: map[string]bool{"orders-db": true}})
	si := s.Server("orders-db")
	if !si.RecordBlocked || si.Address.String() != "10.0.1.4" {
		t.Fatalf("the lock must keep the record on the primary: blocked=%v address=%s", si.RecordBlocked, si.Address)
	}
	if si.Backend() != "10.0.1.5:5432" {
		t.Fatalf("the gateway still routes to the standby, got %s", si.Backend())
	}
}
