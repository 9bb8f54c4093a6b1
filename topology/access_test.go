package topology

import (
	"net/netip"
	"testing"
)

// SPEC: G5 G6 T3 F3
func TestAdmit(t *testing.T) {
	tp := base(t)
	s := snapshot(t, tp, State{})
	reports, orders := s.Server("reports-db"), s.Server("orders-db")
	cases := []struct {
		server *ServerInfo
		client string
		want   string
	}{
		{reports, "203.0.113.1", Allowed}, // first address of the office rule
		{reports, "203.0.113.9", Allowed}, // last address
		{reports, "203.0.113.10", DeniedFirewall},
		{reports, "203.0.112.255", DeniedFirewall},
		{reports, "10.0.7.7", Allowed},      // inside a VNet: the 0.0.0.0 rule
		{reports, "198.51.100.77", Allowed}, // datacenter range: the 0.0.0.0 rule
		{reports, "192.0.2.200", DeniedFirewall},
		{reports, "::ffff:203.0.113.5", Allowed},
		{reports, "2001:db8::1", DeniedFirewall},
		{orders, "10.0.1.50", Allowed},      // its own VNet
		{orders, "10.1.3.4", Allowed},       // directly peered hub-vnet
		{orders, "10.2.0.1", DeniedPrivate}, // far-vnet, not peered
		{orders, "203.0.113.1", DeniedPrivate},
		{orders, "198.51.100.77", DeniedPrivate}, // T3: never from outside, whatever the rules
	}
	for _, c := range cases {
		if got := s.Admit(c.server, netip.MustParseAddr(c.client)); got != c.want {
			t.Errorf("Admit(%s, %s) = %s, want %s", c.server.Server.Name, c.client, got, c.want)
		}
	}
	// Without the 0.0.0.0 rule a VNet address is not admitted.
	server(tp, "reports-db").FirewallRules = server(tp, "reports-db").FirewallRules[:1]
	s = snapshot(t, tp, State{})
	if got := s.Admit(s.Server("reports-db"), netip.MustParseAddr("10.0.7.7")); got != DeniedFirewall {
		t.Fatalf("without the 0.0.0.0 rule: %s", got)
	}
}

// SPEC: G6
func TestPeeringIsNotTransitive(t *testing.T) {
	tp := base(t)
	// far-vnet peers with hub-vnet, which peers with app-vnet.
	tp.VNets[2].Peerings = []string{"hub-vnet"}
	tp.VNets[2].Region = "eastus2"
	s := snapshot(t, tp, State{})
	if got := s.Admit(s.Server("orders-db"), netip.MustParseAddr("10.2.0.9")); got != DeniedPrivate {
		t.Fatalf("a peer of a peer must be refused, got %s", got)
	}
}

// SPEC: G3
func TestServerForHost(t *testing.T) {
	s := snapshot(t, base(t), State{})
	for host, want := range map[string]string{
		"reports-db.postgres.database.azure.com":                 "reports-db",
		"Reports-DB.Postgres.Database.Azure.Com.":                "reports-db",
		"orders-db.postgres.database.azure.com":                  "orders-db",
		"orders-db.contoso.private.postgres.database.azure.com":  "orders-db",
		"reports-db.contoso.private.postgres.database.azure.com": "",
		"nosuch.postgres.database.azure.com":                     "",
		"reports-db.example.com":                                 "",
		"reports-db":                                             "",
	} {
		si := s.ServerForHost(host)
		got := ""
		if si != nil {
			got = si.Server.Name
		}
		if got != want {
			t.Errorf("ServerForHost(%q) = %q, want %q", host, got, want)
		}
	}
}

// SPEC: G4
func TestTLSPolicyDefaults(t *testing.T) {
	s := snapshot(t, base(t), State{})
	if p := s.Server("reports-db").TLS; !p.RequireSecureTransport || p.MinVersion != "TLSv1.2" || p.MaxVersion != "" {
		t.Fatalf("defaults: %+v", p)
	}
}
