package pgplane

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"testing"

	"github.com/pgplane/pgplane/appliance"
	"github.com/pgplane/pgplane/topology"

	"github.com/miekg/dns"
)

// The answers of a snapshot made by a change of servers alone, built from
// the answers before by what changed, answer every name in every view as
// answers built from scratch do. Private zones whose records did not
// change keep their SOA serial, so serials are left out of the comparison.
//
// SPEC: D1 D2 D3 D5
func TestIncrementalAnswersMatchFull(t *testing.T) {
	p := newTestPlugin(t, topology.State{})
	o := options{ttl: appliance.DefaultTTL, ns: []string{appliance.DefaultNS}}
	base := p.answers.Load().snap.Topology
	inBase := func(name string) *topology.Server {
		for _, s := range base.Servers.All() {
			if s.Name == name {
				return s
			}
		}
		return nil
	}
	values := map[string]json.RawMessage{}
	var checker topology.Checker
	steps := []map[string]json.RawMessage{
		{topology.ServerKey("new-db"): json.RawMessage(`{"region":"eastus2","access":"private","network":{"vnet":"app-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"127.0.1.6"},"backends":{"primary":"127.0.0.1:5432"}}`)},
		{topology.ServerKey("pub-db"): json.RawMessage(`{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"}}`)},
		{topology.ServerKey("orders-db"): nil, topology.ParameterKey("orders-db", "require_secure_transport"): nil, topology.ParameterKey("orders-db", "ssl_min_protocol_version"): nil},
		{topology.FirewallRuleKey("reports-db", "office"): json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.9"}`)},
		{topology.ServerKey("new-db"): nil},
	}
	for i, change := range steps {
		names, _ := topology.ServerChanges(change)
		maps.Copy(values, change)
		prev := p.answers.Load()
		d, _, ok := topology.OverlayServers(base, prev.snap.Topology, inBase, prev.snap.FindServer, nil, topology.ServerValues(values), names)
		if !ok {
			t.Fatalf("step %d: not placed", i)
		}
		if vs := checker.ValidateServers(d); len(vs) > 0 {
			t.Fatalf("step %d: %v", i, vs)
		}
		snap, err := prev.snap.WithServers(d, prev.snap.Serial+1)
		if err != nil {
			t.Fatal(err)
		}
		p.publish(snap)
		got := p.answers.Load()
		if got.snap != snap || got == prev {
			t.Fatalf("step %d: the answers were not published", i)
		}
		want := newAnswers(snap, o)
		for _, q := range queries(snap, []string{"new-db", "pub-db", "orders-db", "reports-db"}) {
			for view := topology.PublicView; view < len(snap.VNets); view++ {
				if a, b := answered(got, q, view), answered(want, q, view); a != b {
					t.Fatalf("step %d: %s %s in view %d:\nincremental: %s\nfull:        %s", i, q.name, dns.TypeToString[q.qtype], view, a, b)
				}
			}
		}
	}
}

type question struct {
	name  string
	qtype uint16
}

func queries(s *topology.Snapshot, servers []string) []question {
	var names []string
	for _, n := range servers {
		names = append(names, n+"."+apexFQDN)
		for z := range s.Zones {
			names = append(names, n+"."+z+".")
		}
	}
	for z := range s.Zones {
		names = append(names, z+".", "private."+apexFQDN)
	}
	names = append(names, apexFQDN)
	var out []question
	for _, n := range names {
		for _, t := range []uint16{dns.TypeA, dns.TypeCNAME, dns.TypeSOA, dns.TypeAAAA} {
			out = append(out, question{n, t})
		}
	}
	return out
}

var soaSerial = regexp.MustCompile(`(SOA\s+\S+\s+\S+\s+)\d+`)

func answered(a *answers, q question, view int) string {
	answer, authority, rcode := a.lookup(q.name, q.qtype, view)
	var b strings.Builder
	fmt.Fprintf(&b, "%s;", dns.RcodeToString[rcode])
	for _, rr := range append(answer, authority...) {
		b.WriteString(soaSerial.ReplaceAllString(rr.String(), "${1}N") + ";")
	}
	return b.String()
}

// The answers of a snapshot made by a run-time state change (a region's
// gateway flip, a server's failover), built from the answers before by what
// changed, answer every name in every view as answers built from scratch do.
//
// SPEC: C4 T1 D1 D2
func TestStateChangeAnswersMatchFull(t *testing.T) {
	p := newTestPlugin(t, topology.State{})
	o := options{ttl: appliance.DefaultTTL, ns: []string{appliance.DefaultNS}}
	for i, st := range []topology.State{
		{ActiveGateway: map[string]int{"eastus2": 1}},
		{ActiveGateway: map[string]int{"eastus2": 1}, FailedOver: map[string]bool{"orders-db": true}},
		{FailedOver: map[string]bool{"orders-db": true}},
		{},
	} {
		prev := p.answers.Load()
		snap, err := prev.snap.WithState(st, prev.snap.Serial+1)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Change == nil {
			t.Fatalf("step %d: the state change was not made at its cost", i)
		}
		p.publish(snap)
		got, want := p.answers.Load(), newAnswers(snap, o)
		qs := append(queries(snap, []string{"orders-db", "reports-db"}), question{"eastus2.control." + apexFQDN, dns.TypeA})
		for _, q := range qs {
			for view := topology.PublicView; view < len(snap.VNets); view++ {
				if a, b := answered(got, q, view), answered(want, q, view); a != b {
					t.Fatalf("step %d: %s %s in view %d:\nincremental: %s\nfull:        %s", i, q.name, dns.TypeToString[q.qtype], view, a, b)
				}
			}
		}
	}
}
