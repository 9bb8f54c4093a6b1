package topology

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// deltaBodies are the server bodies the fuzzer chooses from: public,
// private in the delegated subnet (HA or not, at addresses that can clash
// or fill it), private in a subnet that is not delegated, and one with an
// unknown region.
var deltaBodies = []string{
	`{"region":"eastus2","access":"public","backends":{"primary":"127.0.0.1:5432"}}`,
	`{"region":"westus","access":"public","backends":{"primary":"127.0.0.2:5432"}}`,
	`{"region":"eastus2","access":"private","network":{"vnet":"app-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"10.0.1.6"},"backends":{"primary":"10.0.1.6:5432"}}`,
	`{"region":"eastus2","access":"private","network":{"vnet":"app-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"10.0.1.7"},"backends":{"primary":"10.0.1.7:5432"}}`,
	`{"region":"eastus2","access":"private","highAvailability":true,"network":{"vnet":"app-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"10.0.1.8","standby":"10.0.1.9"},"backends":{"primary":"10.0.1.8:5432","standby":"10.0.1.9:5432"}}`,
	`{"region":"eastus2","access":"private","highAvailability":true,"network":{"vnet":"app-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"10.0.1.10","standby":"10.0.1.11"},"backends":{"primary":"10.0.1.10:5432","standby":"10.0.1.11:5432"}}`,
	`{"region":"eastus2","access":"private","network":{"vnet":"app-vnet","subnet":"web","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"10.0.2.6"},"backends":{"primary":"10.0.2.6:5432"}}`,
	`{"region":"nowhere","access":"public","backends":{"primary":"127.0.0.1:5432"}}`,
	`{"region":"eastus2","access":"private","network":{"vnet":"app-vnet","subnet":"db","privateDnsZone":"contoso.private.postgres.database.azure.com"},"addresses":{"primary":"10.0.1.4"},"backends":{"primary":"10.0.1.4:5432"}}`,
}

var deltaNames = []string{"orders-db", "reports-db", "new-a", "new-b", "new-c", "zz-db"}

// deltaStep turns three bytes into a run-time change of one server.
func deltaStep(op, who, what byte) map[string]json.RawMessage {
	name := deltaNames[int(who)%len(deltaNames)]
	switch op % 6 {
	case 0, 1:
		return map[string]json.RawMessage{ServerKey(name): json.RawMessage(deltaBodies[int(what)%len(deltaBodies)])}
	case 2:
		return map[string]json.RawMessage{ServerKey(name): nil, FirewallRuleKey(name, "office"): nil}
	case 3:
		end := []string{"203.0.113.9", "203.0.113.1", "203.0.112.1", "::1"}[int(what)%4]
		return map[string]json.RawMessage{FirewallRuleKey(name, "office"): json.RawMessage(`{"startIpAddress":"203.0.113.1","endIpAddress":"` + end + `"}`)}
	case 4:
		return map[string]json.RawMessage{FirewallRuleKey(name, fmt.Sprint("r", what%3)): nil}
	default:
		v := []string{`"TLSv1.3"`, `"TLSv1.9"`, `"TLSv1.2"`}[int(what)%3]
		return map[string]json.RawMessage{ParameterKey(name, ParamSSLMinProtocolVersion): json.RawMessage(v)}
	}
}

// A change of servers alone, applied at the cost of what it touches, gives
// what laying every run-time change over the file again gives: the same
// topology, the same violations, and a snapshot with the same servers and
// zone records.
//
// SPEC: A2 T7 T11 Z2 C5
func FuzzServerChangesMatchFullRebuild(f *testing.F) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		f.Fatal(err)
	}
	base, _, err := Parse("valid.yaml", data)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0, 2, 2, 0, 3, 3, 1, 4, 4, 0, 5, 5, 0, 2, 8})
	f.Add([]byte{2, 0, 0, 0, 0, 2, 3, 1, 2, 5, 0, 1, 0, 4, 6})
	f.Add([]byte{0, 2, 4, 0, 3, 5, 0, 4, 4, 0, 5, 3, 2, 2, 0, 0, 5, 2})
	f.Add([]byte{true2byte(true), 1, 0, 2, 1, 0, 0, 1, 7, 0, 3, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		inBase := func(name string) *Server {
			if i := base.Servers.IndexFunc(func(s *Server) bool { return s.Name == name }); i >= 0 {
				return base.Servers.At(i)
			}
			return nil
		}
		state := State{FailedOver: map[string]bool{"orders-db": len(script)%2 == 1}}
		values := map[string]json.RawMessage{}
		var checker Checker
		cur := base
		snap, err := NewSnapshot(cur, state, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+2 < len(script) && i < 60; i += 3 {
			change := deltaStep(script[i], script[i+1], script[i+2])
			names, ok := ServerChanges(change)
			if !ok {
				t.Fatalf("a change of servers must be seen as one: %v", change)
			}
			after := maps.Clone(values)
			maps.Copy(after, change)
			full, _ := Overlay(base, after)
			fullVs := append(CheckTransition(cur, full), firstOf(Validate(full))...)
			// As the engine does: the file's order places servers, and the
			// snapshot's index finds the servers to check.
			filePos := func(name string) int { return base.Servers.IndexFunc(func(s *Server) bool { return s.Name == name }) }
			d, _, placed := OverlayServers(base, cur, inBase, snap.FindServer, filePos, ServerValues(after), names)
			if placed {
				d.From = snap
			}
			if !placed {
				if inBase(names[0]) == nil {
					t.Fatalf("only a file's server made again may need the whole overlay: %v", names)
				}
			} else {
				if a, b := encode(t, full), encode(t, d.Topology); a != b {
					t.Fatalf("step %d %v: topologies differ:\nfull:  %s\ndelta: %s", i/3, change, a, b)
				}
				deltaVs := append(snap.CheckServers(d), checker.ValidateServers(d)...)
				if a, b := said(fullVs), said(deltaVs); a != b {
					t.Fatalf("step %d %v: violations differ:\nfull:\n%s\ndelta:\n%s", i/3, change, a, b)
				}
			}
			if len(fullVs) > 0 {
				continue // refused: nothing changes
			}
			serial := snap.Serial + 1
			fullSnap, err := NewSnapshot(full, state, serial)
			if err != nil {
				t.Fatal(err)
			}
			if placed {
				deltaSnap, err := snap.WithServers(d, serial)
				if err != nil {
					t.Fatal(err)
				}
				if a, b := indexed(fullSnap), indexed(deltaSnap); a != b {
					t.Fatalf("step %d %v: snapshots differ:\nfull:\n%s\ndelta:\n%s", i/3, change, a, b)
				}
				snap = deltaSnap
			} else {
				snap = fullSnap
			}
			cur, values = snap.Topology, after
		}
	})
}

func true2byte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func firstOf(vs, _ Violations) Violations { return vs }

func encode(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// said is violations as sorted lines, without where they were found.
func said(vs Violations) string {
	var lines []string
	for _, v := range vs {
		lines = append(lines, fmt.Sprintf("%s: %s: %s: %s", v.Rule, v.Object, v.Field, v.Message))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// indexed is what a snapshot says of its servers and zones, as text.
func indexed(s *Snapshot) string {
	var lines []string
	for name, si := range s.Servers() {
		if si.Server.Name != name {
			lines = append(lines, "MISFILED "+name)
		}
		if s.Regions[si.Region.Name] != si.Region {
			lines = append(lines, "REGION-MISMATCH "+name)
		}
		line := fmt.Sprintf("server %s private=%v region=%s addr=%s backend=%s cname=%s blocked=%v tls=%+v role=%s failover=%+v access=%+v",
			name, si.Private, si.Region.Name, si.Address, si.Backend(), si.CNAMETarget(), si.RecordBlocked, si.TLS, si.AuthRole, si.Failover, si.access)
		if si.Private {
			line += fmt.Sprintf(" vnet=%s zone=%s", si.VNet.Name, si.Zone.Name)
			if s.Zones[si.Zone.Name] != si.Zone || s.ZoneRecord(si.Zone, name) != si {
				line += " ZONE-MISMATCH"
			}
		}
		lines = append(lines, line)
	}
	for name, r := range s.Regions {
		lines = append(lines, fmt.Sprintf("region %s active=%s gateways=%v name=%s", name, r.Active, r.Gateways, r.GatewayName))
	}
	records := map[string][]string{}
	for name, si := range s.Servers() {
		if si.Private {
			records[si.Zone.Name] = append(records[si.Zone.Name], name)
		}
	}
	for name := range s.Zones {
		lines = append(lines, fmt.Sprintf("zone %s records %v", name, slices.Sorted(slices.Values(records[name]))))
	}
	for k, members := range s.subnets.All() {
		lines = append(lines, fmt.Sprintf("subnet %q members %v", k, slices.Sorted(slices.Values(members))))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// A failover decision indexed at the cost of the servers it flips gives the
// snapshot NewSnapshot gives for the same state: servers, their backends
// and addresses, zone records and the regions' active addresses.
//
// SPEC: C4 D10
func FuzzStateChangesMatchFullRebuild(f *testing.F) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		f.Fatal(err)
	}
	// A second HA server in the locked zone's subnet, so that a flip can be
	// blocked (D10) while another is not.
	text := strings.Replace(string(data), "servers:\n", `servers:
  - name: ledger-db
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}
    highAvailability: true
    addresses: {primary: 10.0.1.8, standby: 10.0.1.9}
    backends: {primary: "10.0.1.8:5432", standby: "10.0.1.9:5432"}
`, 1)
	f.Add([]byte{0, 1, 0, 2, 1, 1}, false)
	f.Add([]byte{3, 0, 0, 1, 3, 0}, true)
	f.Add([]byte{2, 0, 0, 0, 2, 1, 2, 0}, true)
	f.Fuzz(func(t *testing.T, script []byte, readOnly bool) {
		lock := "none"
		if readOnly {
			lock = "ReadOnly"
		}
		topo, _, err := Parse("valid.yaml", []byte(strings.Replace(text, "lock: none", "lock: "+lock, 1)))
		if err != nil {
			t.Fatal(err)
		}
		names := []string{"orders-db", "ledger-db", "reports-db", "nope-db"}
		st := State{ActiveGateway: map[string]int{}, FailedOver: map[string]bool{}}
		snap, err := NewSnapshot(topo, st, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(script) && i < 40; i += 2 {
			next := State{ActiveGateway: maps.Clone(st.ActiveGateway), FailedOver: maps.Clone(st.FailedOver)}
			switch op, who := script[i]%4, int(script[i+1]); op {
			case 0, 1:
				name := names[who%len(names)]
				if next.FailedOver == nil {
					next.FailedOver = map[string]bool{}
				}
				next.FailedOver[name] = !next.FailedOver[name]
			case 2:
				region := []string{"eastus2", "westus"}[who%2]
				next.ActiveGateway[region] = (next.ActiveGateway[region] + 1) % 2
			default:
				next.FailedOver = nil // every server back on its primary
			}
			serial := snap.Serial + 1
			full, err := NewSnapshot(topo, next, serial)
			if err != nil {
				t.Fatal(err)
			}
			delta, err := snap.WithState(next, serial)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := indexed(full), indexed(delta); a != b {
				t.Fatalf("step %d: snapshots differ:\nfull:\n%s\ndelta:\n%s", i/2, a, b)
			}
			for name, r := range full.Regions {
				if delta.Regions[name].Active != r.Active {
					t.Fatalf("step %d: region %s active %s, want %s", i/2, name, delta.Regions[name].Active, r.Active)
				}
			}
			snap, st = delta, next
		}
	})
}
