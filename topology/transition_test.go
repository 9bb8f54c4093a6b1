package topology

import (
	"slices"
	"strings"
	"testing"
)

// SPEC: T2 T10 Z3
func TestCheckTransition(t *testing.T) {
	cases := []struct {
		name   string
		rule   string
		mutate func(*Topology)
	}{
		{"access mode change", "T2", func(tp *Topology) {
			s := server(tp, "reports-db")
			s.Access = AccessPrivate
		}},
		{"server moves subnet", "T10", func(tp *Topology) { server(tp, "orders-db").Network.Subnet = "web" }},
		{"occupied subnet changes cidr", "T10", func(tp *Topology) { tp.VNets[0].Subnets[0].CIDR = "10.0.1.16/28" }},
		{"HA server changes zone", "Z3", func(tp *Topology) {
			server(tp, "orders-db").Network.PrivateDNSZone = "other.private.postgres.database.azure.com"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old, next := base(t), base(t)
			tc.mutate(next)
			vs := CheckTransition(old, next)
			if len(vs) == 0 || vs[0].Rule != tc.rule {
				t.Fatalf("want %s, got %v", tc.rule, vs)
			}
		})
	}
}

// SPEC: Z3
func TestZoneChangeAllowedWithoutHA(t *testing.T) {
	old, next := base(t), base(t)
	for _, tp := range []*Topology{old, next} {
		s := server(tp, "orders-db")
		s.HighAvailability = false
		s.Addresses.Standby, s.Backends.Standby = "", ""
	}
	server(next, "orders-db").Network.PrivateDNSZone = "other.private.postgres.database.azure.com"
	if vs := CheckTransition(old, next); len(vs) > 0 {
		t.Fatalf("a non-HA server may change zone: %v", vs)
	}
}

// SPEC: T10
func TestEmptySubnetMayChangeCIDR(t *testing.T) {
	old, next := base(t), base(t)
	next.VNets[0].Subnets[1].CIDR = "10.0.3.0/24"
	if vs := CheckTransition(old, next); len(vs) > 0 {
		t.Fatalf("a subnet without servers may change: %v", vs)
	}
}

// SPEC: D10
func TestReadOnlyZoneRecordsCannotChange(t *testing.T) {
	lock := func(tp *Topology) { tp.PrivateDNSZones[0].Lock = LockReadOnly }
	old, next := base(t), base(t)
	lock(old)
	lock(next)
	server(next, "orders-db").Addresses.Primary = "10.0.1.6"
	if vs := CheckTransition(old, next); len(vs) != 1 || vs[0].Rule != "D10" || !strings.Contains(vs[0].Message, "locked ReadOnly") {
		t.Fatalf("an address change in a locked zone: %v", vs)
	}
	next = base(t)
	lock(next)
	next.Servers = next.Servers.Delete(0) // orders-db removed
	if vs := CheckTransition(old, next); len(vs) != 1 || vs[0].Rule != "D10" {
		t.Fatalf("a record removed from a locked zone: %v", vs)
	}
	// Unlocking and changing in one step is allowed: the lock is the change.
	next = base(t)
	server(next, "orders-db").Addresses.Primary = "10.0.1.6"
	if vs := CheckTransition(old, next); len(vs) != 0 {
		t.Fatalf("the lock removed in the same change: %v", vs)
	}
}

// A change of VNets alone shares the server list with the topology before
// it: the rules that bind the change are still found (an occupied subnet's
// CIDR, a VNet in use deleted), and the server list is not read for rules
// no server could break.
//
// SPEC: T10
func TestTransitionOfVNetsAloneSharesTheServers(t *testing.T) {
	old := base(t)
	withVNets := func(edit func([]VNet) []VNet) *Topology {
		next := *old
		next.VNets = edit(slices.Clone(old.VNets))
		if !next.Servers.Same(old.Servers) {
			t.Fatal("the copy does not share the server list")
		}
		return &next
	}
	cidr := withVNets(func(vns []VNet) []VNet {
		vns[0].Subnets = slices.Clone(vns[0].Subnets)
		vns[0].Subnets[0].CIDR = "10.0.1.16/28"
		return vns
	})
	if vs := CheckTransition(old, cidr); len(vs) != 1 || vs[0].Rule != "T10" || !strings.Contains(vs[0].Message, `holds server "orders-db"`) {
		t.Fatalf("an occupied subnet's CIDR changed: %v", vs)
	}
	deleted := withVNets(func(vns []VNet) []VNet { return vns[1:] })
	if vs := CheckTransition(old, deleted); len(vs) != 1 || vs[0].Rule != "T10" || !strings.Contains(vs[0].Message, "delete the server first") {
		t.Fatalf("a VNet in use deleted: %v", vs)
	}
	added := withVNets(func(vns []VNet) []VNet {
		return append(vns, VNet{Name: "new-vnet", Region: "eastus2", AddressSpaces: []string{"10.9.0.0/16"}})
	})
	if vs := CheckTransition(old, added); len(vs) != 0 {
		t.Fatalf("a VNet added: %v", vs)
	}
}
