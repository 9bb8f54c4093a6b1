package topology

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzNetworkChangesMatchValidate checks that a change of VNets or private DNS
// zones alone laid over a valid topology is judged by ValidateNetwork exactly
// as by Validate (the same violations, in the same order) and, accepted,
// indexed by Snapshot.WithNetwork as NewSnapshot indexes it. A change names
// one VNet of the fixture or a new one, and sets or deletes it, one of its
// subnets or one of its peerings; or one zone of the fixture or a new one
// (one named after a server too), and sets or deletes it or one of its links.
//
// SPEC: T4 T5 T6 T7 T9 T11 Z1 Z2 A2 D4 D5
func FuzzNetworkChangesMatchValidate(f *testing.F) {
	f.Add(byte(0), byte(1), byte(0), `{"name":"db","cidr":"10.0.1.0/29","delegation":"Microsoft.DBforPostgreSQL/flexibleServers"}`)
	f.Add(byte(0), byte(1), byte(0), `{"name":"db","cidr":"10.0.1.0/28"}`)
	f.Add(byte(0), byte(0), byte(0), `{"region":"westus","addressSpaces":["10.0.0.0/16"]}`)
	f.Add(byte(0), byte(0), byte(0), `{"region":"eastus2","addressSpaces":["10.1.0.0/16"]}`)
	f.Add(byte(0), byte(1), byte(0), ``)
	f.Add(byte(2), byte(2), byte(1), `{}`)
	f.Add(byte(3), byte(0), byte(0), `{"region":"eastus2","addressSpaces":["10.0.0.0/8"]}`)
	f.Add(byte(3), byte(2), byte(0), `{}`)
	f.Add(byte(0), byte(1), byte(1), `{"name":"web","cidr":"10.0.1.0/28"}`)
	f.Add(byte(0), byte(0), byte(0), `{"region":"eastus2","addressSpaces":["10.0.0.0/16","10.7.0.0/16"]}`)
	f.Add(byte(3), byte(0), byte(0), `{"region":"westus","addressSpaces":["10.8.0.0/16"],"resolverAddress":"10.8.0.250"}`)
	f.Add(byte(0), byte(3), byte(0), `{"lock":"ReadOnly"}`)
	f.Add(byte(0), byte(3), byte(0), ``)
	f.Add(byte(1), byte(3), byte(0), `{}`)
	f.Add(byte(2), byte(3), byte(0), `{}`)
	f.Add(byte(0), byte(4), byte(1), `{}`)
	f.Add(byte(0), byte(4), byte(0), ``)
	f.Add(byte(3), byte(4), byte(2), `{}`)
	base, _, err := Parse("valid.yaml", mustRead(f, "testdata/valid.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	// A failover in force, so that the servers made again keep it.
	from, err := NewSnapshot(base, State{FailedOver: map[string]bool{"orders-db": true}, ActiveGateway: map[string]int{"westus": 1}}, 1)
	if err != nil {
		f.Fatal(err)
	}
	vnets := []string{"app-vnet", "hub-vnet", "far-vnet", "new-vnet"}
	zones := []string{"contoso.private.postgres.database.azure.com", "fabrikam.private.postgres.database.azure.com", "reports-db.postgres.database.azure.com", "Contoso.Private.postgres.database.azure.com"}
	f.Fuzz(func(t *testing.T, which, kind, child byte, value string) {
		name := vnets[int(which)%len(vnets)]
		var key string
		switch kind % 5 {
		case 0:
			key = VNetKey(name)
		case 1:
			key = SubnetKey(name, []string{"db", "web", "other"}[int(child)%3])
		case 2:
			key = PeeringKey(name, vnets[int(child)%len(vnets)])
		case 3:
			name = zones[int(which)%len(zones)]
			key = ZoneKey(name)
		default:
			name = zones[int(which)%len(zones)]
			key = LinkKey(name, vnets[int(child)%len(vnets)])
		}
		changes := map[string]json.RawMessage{key: json.RawMessage(value)}
		if value == "" {
			changes[key] = nil
		}
		next, _ := Overlay(base, changes)
		touchedVNets, touchedZones, ok := NetworkChanges([]string{key})
		if !ok || !touchedVNets[name] && !touchedZones[CanonicalZone(name)] {
			t.Fatalf("NetworkChanges(%q) = %v, %v, %v", key, touchedVNets, touchedZones, ok)
		}
		want, _ := Validate(next)
		got := ValidateNetwork(next, touchedVNets, touchedZones)
		if len(want) > 0 || len(got) > 0 {
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("%s = %s:\nValidate:        %v\nValidateNetwork: %v", key, value, want, got)
			}
			return
		}
		// Accepted: the snapshot made at the cost of the change is the
		// one made from scratch.
		wantSnap, err := NewSnapshot(next, from.State, 2)
		if err != nil {
			t.Fatal(err)
		}
		// The engine shares the served server list with a change of VNets
		// or zones alone (the overlay's holds the same servers in copies).
		next.Servers = base.Servers
		gotSnap, err := from.WithNetwork(next, 2)
		if err != nil {
			t.Fatal(err)
		}
		if w, g := networkText(wantSnap), networkText(gotSnap); w != g {
			t.Fatalf("%s = %s: snapshots differ:\nNewSnapshot:\n%s\nWithNetwork:\n%s", key, value, w, g)
		}
	})
}

// networkText is what a snapshot says of its servers, zones, views and
// the cloud's ranges, as text: indexed, and the VNets' indexes, peers,
// spaces and resolvers, and the view of an address in each space.
func networkText(s *Snapshot) string {
	var lines []string
	for _, vi := range s.VNets {
		if s.vnetByName[vi.Name] != vi {
			lines = append(lines, "MISFILED vnet "+vi.Name)
		}
		lines = append(lines, fmt.Sprintf("vnet %d %s region=%s spaces=%v peers=%v", vi.Index, vi.Name, vi.Region, vi.Spaces, vi.Peers))
		for _, p := range vi.Spaces {
			lines = append(lines, fmt.Sprintf("view of %s: %d", p.Addr(), s.ViewOf(netip.Addr{}, p.Addr())))
		}
	}
	for name, z := range s.Zones {
		lines = append(lines, fmt.Sprintf("zone %s index=%d lock=%s links=%v", name, z.Index, z.Lock, z.links))
	}
	for a, i := range s.resolvers {
		lines = append(lines, fmt.Sprintf("resolver %s: %d", a, i))
	}
	for name, si := range s.Servers() {
		if si.Private && s.vnetByName[si.VNet.Name] != si.VNet {
			lines = append(lines, "VNET-MISMATCH "+name)
		}
	}
	lines = append(lines, fmt.Sprintf("cloud %v", s.cloud), indexed(s))
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func mustRead(f *testing.F, path string) []byte {
	f.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// A change of anything but VNets (with their subnets and peerings) and
// zones (with their links) is not one NetworkChanges takes.
//
// SPEC: A2
func TestNetworkChangesTakesVNetsAndZonesAlone(t *testing.T) {
	for _, keys := range [][]string{
		{ServerKey("a")},
		{VNetKey("v"), ServerKey("a")},
		{FirewallRuleKey("a", "r")},
		{"vnet/"},
		{},
	} {
		if vnets, zones, ok := NetworkChanges(keys); ok {
			t.Errorf("NetworkChanges(%q) = %v, %v, true; want false", keys, vnets, zones)
		}
	}
	vnets, zones, ok := NetworkChanges([]string{VNetKey("v"), SubnetKey("v", "s"), PeeringKey("w", "v"), LinkKey("Z.private.postgres.database.azure.com", "v")})
	if !ok || fmt.Sprint(vnets) != fmt.Sprint(map[string]bool{"v": true, "w": true}) || fmt.Sprint(zones) != fmt.Sprint(map[string]bool{"z.private.postgres.database.azure.com": true}) {
		t.Errorf("NetworkChanges = %v, %v, %v", vnets, zones, ok)
	}
}
