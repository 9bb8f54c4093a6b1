package topology

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
)

// FuzzVNetChangesMatchValidate checks that a change of VNets alone laid over
// a valid topology is judged by ValidateVNets exactly as by Validate: the
// same violations, in the same order. A change names one VNet of the
// fixture or a new one, and sets or deletes it, one of its subnets or one
// of its peerings.
//
// SPEC: T4 T5 T6 T7 T9 T11 A2
func FuzzVNetChangesMatchValidate(f *testing.F) {
	f.Add(byte(0), byte(1), byte(0), `{"name":"db","cidr":"10.0.1.0/29","delegation":"Microsoft.DBforPostgreSQL/flexibleServers"}`)
	f.Add(byte(0), byte(1), byte(0), `{"name":"db","cidr":"10.0.1.0/28"}`)
	f.Add(byte(0), byte(0), byte(0), `{"region":"westus","addressSpaces":["10.0.0.0/16"]}`)
	f.Add(byte(0), byte(0), byte(0), `{"region":"eastus2","addressSpaces":["10.1.0.0/16"]}`)
	f.Add(byte(0), byte(1), byte(0), ``)
	f.Add(byte(2), byte(2), byte(1), `{}`)
	f.Add(byte(3), byte(0), byte(0), `{"region":"eastus2","addressSpaces":["10.0.0.0/8"]}`)
	f.Add(byte(3), byte(2), byte(0), `{}`)
	f.Add(byte(0), byte(1), byte(1), `{"name":"web","cidr":"10.0.1.0/28"}`)
	base, _, err := Parse("valid.yaml", mustRead(f, "testdata/valid.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	vnets := []string{"app-vnet", "hub-vnet", "far-vnet", "new-vnet"}
	f.Fuzz(func(t *testing.T, which, kind, child byte, value string) {
		name := vnets[int(which)%len(vnets)]
		var key string
		switch kind % 3 {
		case 0:
			key = VNetKey(name)
		case 1:
			key = SubnetKey(name, []string{"db", "web", "other"}[int(child)%3])
		default:
			key = PeeringKey(name, vnets[int(child)%len(vnets)])
		}
		changes := map[string]json.RawMessage{key: json.RawMessage(value)}
		if value == "" {
			changes[key] = nil
		}
		next, _ := Overlay(base, changes)
		touched, ok := VNetChanges([]string{key})
		if !ok || !touched[name] {
			t.Fatalf("VNetChanges(%q) = %v, %v", key, touched, ok)
		}
		want, _ := Validate(next)
		got := ValidateVNets(next, touched)
		if len(want) == 0 && len(got) == 0 {
			return
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%s = %s:\nValidate:      %v\nValidateVNets: %v", key, value, want, got)
		}
	})
}

func mustRead(f *testing.F, path string) []byte {
	f.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// A change of anything but VNets, their subnets and peerings is not one
// VNetChanges takes.
//
// SPEC: A2
func TestVNetChangesTakesVNetsAlone(t *testing.T) {
	for _, keys := range [][]string{
		{ServerKey("a")},
		{VNetKey("v"), ZoneKey("z.private.postgres.database.azure.com")},
		{FirewallRuleKey("a", "r")},
		{"vnet/"},
		{},
	} {
		if got, ok := VNetChanges(keys); ok {
			t.Errorf("VNetChanges(%q) = %v, true; want false", keys, got)
		}
	}
	got, ok := VNetChanges([]string{VNetKey("v"), SubnetKey("v", "s"), PeeringKey("w", "v")})
	if want := map[string]bool{"v": true, "w": true}; !ok || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("VNetChanges = %v, %v; want %v", got, ok, want)
	}
}
