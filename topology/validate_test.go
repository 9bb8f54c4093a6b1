package topology

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// base loads the valid fixture; each case mutates a fresh copy.
func base(t *testing.T) *Topology {
	t.Helper()
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, warnings, err := Parse("valid.yaml", data)
	if err != nil {
		t.Fatalf("fixture is invalid: %v", err)
	}
	if len(warnings) > 0 {
		t.Fatalf("fixture has warnings: %v", warnings)
	}
	return topo
}

func server(t *Topology, name string) *Server {
	for i := range t.Servers.All() {
		if t.Servers.At(i).Name == name {
			return t.Servers.At(i)
		}
	}
	panic("no server " + name)
}

// SPEC: T1 T3 T4 T5 T6 T7 T8 T9 T11 Z1 Z2 F1 F2 D4 G4
func TestValidateRules(t *testing.T) {
	cases := []struct {
		name   string
		rule   string
		want   string // a part of the message
		mutate func(*Topology)
	}{
		{"no gateway", "T1", "0 given", func(tp *Topology) { tp.Regions[0].Gateways = nil }},
		{"four gateways", "T1", "4 given", func(tp *Topology) {
			tp.Regions[0].Gateways = append(tp.Regions[0].Gateways, "10.9.9.1", "10.9.9.2")[:4]
		}},
		{"duplicate gateway", "T1", "listed twice", func(tp *Topology) { tp.Regions[0].Gateways[1] = tp.Regions[0].Gateways[0] }},
		{"ipv6 gateway", "T1", "IPv6", func(tp *Topology) { tp.Regions[0].Gateways[1] = "2001:db8::1" }},
		{"private server with firewall rule", "T3", "no firewall rules", func(tp *Topology) {
			server(tp, "orders-db").FirewallRules = []FirewallRule{{Name: "x", StartIPAddress: "1.1.1.1", EndIPAddress: "1.1.1.1"}}
		}},
		{"private server without network", "T3", "needs network", func(tp *Topology) { server(tp, "orders-db").Network = nil }},
		{"public server in a vnet", "T3", "not placed in a VNet", func(tp *Topology) {
			server(tp, "reports-db").Network = &Network{VNet: "app-vnet", Subnet: "db"}
		}},
		{"vnet in unknown region", "T4", "not defined", func(tp *Topology) { tp.VNets[1].Region = "mars" }},
		{"server and vnet in different regions", "T4", "share one region", func(tp *Topology) { server(tp, "orders-db").Region = "westus" }},
		{"peered vnets overlap", "T5", "peered vnet", func(tp *Topology) { tp.VNets[1].AddressSpaces = []string{"10.0.128.0/17"} }},
		{"unpeered overlap without resolver addresses", "D4", "no resolver address", func(tp *Topology) { tp.VNets[2].AddressSpaces = []string{"10.1.0.0/24"} }},
		{"subnet /29", "T6", "at most /28", func(tp *Topology) { tp.VNets[0].Subnets[0].CIDR = "10.0.1.0/29" }},
		{"reserved first addresses", "T7", "reserved", func(tp *Topology) { server(tp, "orders-db").Addresses.Primary = "10.0.1.3" }},
		{"reserved last address", "T7", "reserved", func(tp *Topology) { server(tp, "orders-db").Addresses.Standby = "10.0.1.15" }},
		{"reserved subnet name", "T8", "reserved", func(tp *Topology) { tp.VNets[0].Subnets[1].Name = "GatewaySubnet" }},
		{"reserved subnet name, other case", "T8", "AzureBastionSubnet", func(tp *Topology) { tp.VNets[0].Subnets[1].Name = "azurebastionsubnet" }},
		{"undelegated subnet", "T9", "not delegated", func(tp *Topology) { tp.VNets[0].Subnets[0].Delegation = "" }},
		{"subnet full", "T11", "11 usable addresses", func(tp *Topology) {
			for _, n := range []string{"b1", "b2"} {
				s := *server(tp, "orders-db")
				s.Name = n + "-db"
				s.Addresses = &Addresses{Primary: map[string]string{"b1": "10.0.1.6", "b2": "10.0.1.8"}[n], Standby: map[string]string{"b1": "10.0.1.7", "b2": "10.0.1.9"}[n]}
				tp.Servers = tp.Servers.Insert(tp.Servers.Len(), &s)
			}
		}},
		{"zone outside the apex", "Z1", "ends in .postgres.database.azure.com", func(tp *Topology) { tp.PrivateDNSZones[0].Name = "contoso.example.com" }},
		{"zone is the apex", "Z1", "at least one label", func(tp *Topology) { tp.PrivateDNSZones[0].Name = "postgres.database.azure.com" }},
		{"zone in the control subtree", "Z1", "gateway names", func(tp *Topology) { tp.PrivateDNSZones[0].Name = "x.control.postgres.database.azure.com" }},
		{"zone named after a server", "Z2", "name of the zone", func(tp *Topology) {
			tp.PrivateDNSZones = append(tp.PrivateDNSZones, PrivateDNSZone{Name: "reports-db.postgres.database.azure.com"})
		}},
		{"ipv6 firewall start", "F1", "startIpAddress: \"2001:db8::1\" is an IPv6 address", func(tp *Topology) {
			server(tp, "reports-db").FirewallRules[0].StartIPAddress = "2001:db8::1"
		}},
		{"ipv6 firewall end", "F1", "endIpAddress", func(tp *Topology) { server(tp, "reports-db").FirewallRules[0].EndIPAddress = "::1" }},
		{"firewall start after end", "F2", "before start", func(tp *Topology) { server(tp, "reports-db").FirewallRules[0].StartIPAddress = "203.0.113.10" }},
		{"unknown parameter", "G4", "unknown parameter", func(tp *Topology) { server(tp, "reports-db").Parameters = map[string]string{"work_mem": "4MB"} }},
		{"max below min", "G4", "below ssl_min_protocol_version", func(tp *Topology) {
			server(tp, "orders-db").Parameters["ssl_max_protocol_version"] = "TLSv1.1"
		}},
		{"bad server name", "schema", "3 to 63", func(tp *Topology) { server(tp, "reports-db").Name = "Reports_DB" }},
		{"address outside subnet", "schema", "outside the server's subnet", func(tp *Topology) { server(tp, "orders-db").Addresses.Primary = "10.0.9.4" }},
		{"HA without standby backend", "schema", "backends.standby", func(tp *Topology) { server(tp, "orders-db").Backends.Standby = "" }},
		{"unknown peering", "schema", "not defined", func(tp *Topology) { tp.VNets[1].Peerings = []string{"nowhere"} }},
		{"cidr with host bits", "schema", "did you mean 10.0.2.0/24", func(tp *Topology) { tp.VNets[0].Subnets[1].CIDR = "10.0.2.7/24" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tp := base(t)
			tc.mutate(tp)
			violations, _ := Validate(tp)
			for _, v := range violations {
				if v.Rule == tc.rule && strings.Contains(v.Error(), tc.want) {
					return
				}
			}
			t.Fatalf("want a %s violation containing %q, got:\n%v", tc.rule, tc.want, violations)
		})
	}
}

// SPEC: T11
func TestSubnetHoldsElevenNonHAServers(t *testing.T) {
	tp := base(t)
	tp.Servers = tp.Servers.Delete(0) // drop the HA server
	for i := 4; i <= 14; i++ {
		tp.Servers = tp.Servers.Insert(tp.Servers.Len(), &Server{Name: "s" + strconv.Itoa(i) + "-db", Region: "eastus2", Access: AccessPrivate,
			Network:   &Network{VNet: "app-vnet", Subnet: "db", PrivateDNSZone: "contoso.private.postgres.database.azure.com"},
			Addresses: &Addresses{Primary: "10.0.1." + strconv.Itoa(i)}, Backends: Backends{Primary: "127.0.0.1:5432"}})
	}
	if violations, _ := Validate(tp); len(violations) > 0 {
		t.Fatalf("11 servers in a /28 must fit: %v", violations)
	}
	tp.Servers = tp.Servers.Insert(tp.Servers.Len(), &Server{Name: "one-too-many", Region: "eastus2", Access: AccessPrivate,
		Network:   &Network{VNet: "app-vnet", Subnet: "db", PrivateDNSZone: "contoso.private.postgres.database.azure.com"},
		Addresses: &Addresses{Primary: "10.0.1.9"}, Backends: Backends{Primary: "127.0.0.1:5432"}})
	violations, _ := Validate(tp)
	if len(violations) == 0 || violations[0].Rule != "T11" {
		t.Fatalf("the twelfth server must be refused with T11, got %v", violations)
	}
}

// SPEC: D10
func TestReadOnlyLockOnHAZoneWarns(t *testing.T) {
	tp := base(t)
	tp.PrivateDNSZones[0].Lock = LockReadOnly
	violations, warnings := Validate(tp)
	if len(violations) > 0 {
		t.Fatalf("a lock is not an error: %v", violations)
	}
	if len(warnings) != 1 || warnings[0].Rule != "D10" || !strings.Contains(warnings[0].Message, "failover") {
		t.Fatalf("want one D10 warning about failover, got %v", warnings)
	}
}

// SPEC: D4
func TestOverlapAllowedWithResolverAddresses(t *testing.T) {
	tp := base(t)
	tp.VNets[2].AddressSpaces = []string{"10.1.0.0/24"}
	tp.VNets[2].ResolverAddress = "10.2.0.250"
	tp.VNets[1].ResolverAddress = "10.1.0.250"
	if violations, _ := Validate(tp); len(violations) > 0 {
		t.Fatalf("overlap told apart by resolver addresses must be accepted: %v", violations)
	}
}

func TestNameRules(t *testing.T) {
	for _, c := range []struct {
		name          string
		server, label bool
		object        bool
	}{
		{"orders-db", true, true, true},
		{"ab", false, true, true},
		{"a", false, true, true},
		{"-ab", false, false, false},
		{"ab-", false, false, true},
		{"Orders", false, false, true},
		{"a_b", false, false, true},
		{"a.b", false, false, true},
		{"_ab", false, false, false},
		{strings.Repeat("a", 63), true, true, true},
		{strings.Repeat("a", 64), false, false, true},
		{strings.Repeat("a", 81), false, false, false},
		{"", false, false, false},
	} {
		if got := validServerName(c.name); got != c.server {
			t.Errorf("validServerName(%q) = %v", c.name, got)
		}
		if got := validLabel(c.name); got != c.label {
			t.Errorf("validLabel(%q) = %v", c.name, got)
		}
		if got := validObjectName(c.name); got != c.object {
			t.Errorf("validObjectName(%q) = %v", c.name, got)
		}
	}
}
