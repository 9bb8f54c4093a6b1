package pgplane

import (
	"context"
	"os"
	"sort"
	"testing"

	"github.com/pgplane/pgplane/appliance"
	"github.com/pgplane/pgplane/topology"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// newTestPlugin builds the plugin over testdata/topology.yaml (the dev
// topology) with default options.
func newTestPlugin(t testing.TB, state topology.State) *PGPlane {
	t.Helper()
	data, err := os.ReadFile("testdata/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, _, err := topology.Parse("topology.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := topology.NewSnapshot(topo, state, 7)
	if err != nil {
		t.Fatal(err)
	}
	p := &PGPlane{opts: options{ttl: appliance.DefaultTTL, ns: []string{appliance.DefaultNS}}, Next: test.NextHandler(dns.RcodeRefused, nil)}
	p.publish(snap)
	return p
}

const (
	soaPublic  = "postgres.database.azure.com. 5 IN SOA ns1.pgplane.invalid. hostmaster.postgres.database.azure.com. 7 3600 600 86400 5"
	soaPrivate = "contoso.private.postgres.database.azure.com. 5 IN SOA azureprivatedns.net. azureprivatedns-host.microsoft.com. 7 3600 600 86400 5"
	cnamePub   = "reports-db.postgres.database.azure.com. 5 IN CNAME eastus2.control.postgres.database.azure.com."
	aGateway   = "eastus2.control.postgres.database.azure.com. 5 IN A 127.0.0.1"
	cnamePriv  = "orders-db.postgres.database.azure.com. 5 IN CNAME orders-db.contoso.private.postgres.database.azure.com."
	aPriv      = "orders-db.contoso.private.postgres.database.azure.com. 5 IN A 127.0.1.4"
)

type viewCase struct {
	test.Case
	remote string
}

// SPEC: D1 D2 D3 D4 D5 D7
func TestServeDNS(t *testing.T) {
	p := newTestPlugin(t, topology.State{})
	cases := []viewCase{
		{test.Case{Qname: "reports-db.postgres.database.azure.com.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.CNAME(cnamePub), test.A(aGateway)}}, "127.0.0.1"},
		{test.Case{Qname: "REPORTS-DB.postgres.database.azure.com.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.CNAME(cnamePub), test.A(aGateway)}}, "127.0.0.1"},
		{test.Case{Qname: "reports-db.postgres.database.azure.com.", Qtype: dns.TypeAAAA,
			Answer: []dns.RR{test.CNAME(cnamePub)}, Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.0.1"},
		{test.Case{Qname: "reports-db.postgres.database.azure.com.", Qtype: dns.TypeCNAME,
			Answer: []dns.RR{test.CNAME(cnamePub)}}, "127.0.0.1"},
		// Private server, linked VNet.
		{test.Case{Qname: "orders-db.postgres.database.azure.com.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.CNAME(cnamePriv), test.A(aPriv)}}, "127.0.1.77"},
		{test.Case{Qname: "orders-db.postgres.database.azure.com.", Qtype: dns.TypeAAAA,
			Answer: []dns.RR{test.CNAME(cnamePriv)}, Ns: []dns.RR{test.SOA(soaPrivate)}}, "127.0.1.77"},
		{test.Case{Qname: "nope.contoso.private.postgres.database.azure.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA(soaPrivate)}}, "127.0.1.77"},
		// The empty non-terminal above a linked zone exists for the linked VNet only.
		{test.Case{Qname: "private.postgres.database.azure.com.", Qtype: dns.TypeA,
			Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.1.77"},
		{test.Case{Qname: "private.postgres.database.azure.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.2.1"},
		// Private server, peered but unlinked VNet, and outside every VNet.
		{test.Case{Qname: "orders-db.postgres.database.azure.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Answer: []dns.RR{test.CNAME(cnamePriv)}, Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.2.1"},
		{test.Case{Qname: "orders-db.postgres.database.azure.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Answer: []dns.RR{test.CNAME(cnamePriv)}, Ns: []dns.RR{test.SOA(soaPublic)}}, "198.51.100.1"},
		{test.Case{Qname: "orders-db.contoso.private.postgres.database.azure.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.2.1"},
		// Apex and misses.
		{test.Case{Qname: "postgres.database.azure.com.", Qtype: dns.TypeNS,
			Answer: []dns.RR{test.NS("postgres.database.azure.com. 3600 IN NS ns1.pgplane.invalid.")}}, "127.0.0.1"},
		{test.Case{Qname: "postgres.database.azure.com.", Qtype: dns.TypeA, Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.0.1"},
		{test.Case{Qname: "x.reports-db.postgres.database.azure.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA(soaPublic)}}, "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.Qname+"/"+dns.TypeToString[tc.Qtype]+"/"+tc.remote, func(t *testing.T) {
			tc.Authoritative = true
			rec := dnstest.NewRecorder(&test.ResponseWriter{RemoteIP: tc.remote})
			if _, err := p.ServeDNS(context.Background(), rec, tc.Msg()); err != nil {
				t.Fatal(err)
			}
			check(t, rec.Msg, tc.Case)
		})
	}
}

// SPEC: C4 T1
func TestServeDNSAfterFailover(t *testing.T) {
	p := newTestPlugin(t, topology.State{ActiveGateway: map[string]int{"eastus2": 1}, FailedOver: map[string]bool{"orders-db": true}})
	for _, tc := range []viewCase{
		{test.Case{Qname: "reports-db.postgres.database.azure.com.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.CNAME(cnamePub), test.A("eastus2.control.postgres.database.azure.com. 5 IN A 127.0.0.2")}}, "127.0.0.1"},
		{test.Case{Qname: "orders-db.postgres.database.azure.com.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.CNAME(cnamePriv), test.A("orders-db.contoso.private.postgres.database.azure.com. 5 IN A 127.0.1.5")}}, "127.0.1.77"},
	} {
		rec := dnstest.NewRecorder(&test.ResponseWriter{RemoteIP: tc.remote})
		if _, err := p.ServeDNS(context.Background(), rec, tc.Msg()); err != nil {
			t.Fatal(err)
		}
		check(t, rec.Msg, tc.Case)
	}
}

// SPEC: D6
func TestOutsideNamesGoToNextPlugin(t *testing.T) {
	p := newTestPlugin(t, topology.State{})
	for _, name := range []string{"example.com.", "database.azure.com.", "xpostgres.database.azure.com."} {
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		rcode, _ := p.ServeDNS(context.Background(), rec, m)
		if rcode != dns.RcodeRefused || rec.Msg != nil {
			t.Errorf("%s: want the next plugin's REFUSED and no reply written, got %d %v", name, rcode, rec.Msg)
		}
	}
}

// SPEC: D1
func TestZoneTransferRefused(t *testing.T) {
	p := newTestPlugin(t, topology.State{})
	m := new(dns.Msg)
	m.SetQuestion("postgres.database.azure.com.", dns.TypeAXFR)
	if rcode, _ := p.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m); rcode != dns.RcodeRefused {
		t.Fatalf("AXFR: want REFUSED, got %d", rcode)
	}
}

func BenchmarkServeDNS(b *testing.B) {
	p := newTestPlugin(b, topology.State{})
	w := &test.ResponseWriter{RemoteIP: "127.0.1.77"}
	m := new(dns.Msg)
	m.SetQuestion("orders-db.postgres.database.azure.com.", dns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.ServeDNS(ctx, w, m)
	}
}

// check verifies that CNAMEs come before their targets, then compares the
// reply with the case, both sorted.
func check(t *testing.T, m *dns.Msg, tc test.Case) {
	t.Helper()
	if m == nil {
		t.Fatal("no reply written")
	}
	if err := test.CNAMEOrder(m); err != nil {
		t.Fatalf("%v\n%v", err, m)
	}
	sort.Sort(test.RRSet(tc.Answer))
	sort.Sort(test.RRSet(tc.Ns))
	if err := test.SortAndCheck(m, tc); err != nil {
		t.Fatalf("%v\n%v", err, m)
	}
}

// Answers are counted by the view that asked; a view's counters are made
// when it first answers, so views that never ask hold none.
//
// SPEC: D4
func TestAnswersCountedByView(t *testing.T) {
	p := newTestPlugin(t, topology.State{})
	a := p.answers.Load()
	app, hub := -1, -1
	for i, v := range a.snap.VNets {
		switch v.Name {
		case "app-vnet":
			app = i
		case "hub-vnet":
			hub = i
		}
	}
	if app < 0 || hub < 0 {
		t.Fatal("testdata topology: app-vnet or hub-vnet missing")
	}
	noError, nxDomain := answersTotal.WithLabelValues("app-vnet", "NOERROR"), answersTotal.WithLabelValues("app-vnet", "NXDOMAIN")
	before, beforeNX := testutil.ToFloat64(noError), testutil.ToFloat64(nxDomain)
	for _, name := range []string{"orders-db.postgres.database.azure.com.", "orders-db.postgres.database.azure.com.", "nope.contoso.private.postgres.database.azure.com."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if _, err := p.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{RemoteIP: "127.0.1.77"}), m); err != nil {
			t.Fatal(err)
		}
	}
	if got, gotNX := testutil.ToFloat64(noError)-before, testutil.ToFloat64(nxDomain)-beforeNX; got != 2 || gotNX != 1 {
		t.Fatalf("app-vnet's answers counted NOERROR +%v NXDOMAIN +%v, want +2 and +1", got, gotNX)
	}
	if a.counters[app+1].Load() == nil {
		t.Fatal("app-vnet answered but holds no counters")
	}
	if a.counters[hub+1].Load() != nil {
		t.Fatal("hub-vnet never asked but holds counters")
	}
}
