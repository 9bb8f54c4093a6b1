package topology

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const overlayBase = `regions: [{name: eastus2, gateways: [192.0.2.10, 192.0.2.11]}]
vnets:
  - {name: app, region: eastus2, addressSpaces: [10.0.0.0/16], subnets: [{name: db, cidr: 10.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]}
privateDnsZones:
  - {name: Contoso.private.postgres.database.azure.com, links: [app]}
servers:
  - name: db-one
    region: eastus2
    access: public
    backends: {primary: "10.9.0.1:5432"}
    parameters: {require_secure_transport: "on"}
    firewallRules: [{name: office, startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.9}]
`

func parseBase(t *testing.T) *Topology {
	t.Helper()
	base, _, err := Parse("base.yaml", []byte(overlayBase))
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// SPEC: A1 C5
func TestOverlayLaysChangesOverTheFile(t *testing.T) {
	base := parseBase(t)
	pristine := parseBase(t)
	rule, _ := json.Marshal(FirewallRule{StartIPAddress: "198.51.100.1", EndIPAddress: "198.51.100.1"})
	s2, _ := json.Marshal(Server{Region: "eastus2", Access: AccessPublic, Backends: Backends{Primary: "10.9.0.2:5432"}})
	got, problems := Overlay(base, map[string]json.RawMessage{
		FirewallRuleKey("db-one", "office"):                           nil, // a file rule deleted
		FirewallRuleKey("db-one", "home"):                             rule,
		ParameterKey("db-one", ParamSSLMinProtocolVersion):            json.RawMessage(`"TLSv1.3"`),
		ServerKey("db-two"):                                           s2,
		FirewallRuleKey("db-two", "home"):                             rule,
		FirewallRuleKey("gone", "x"):                                  rule, // parent does not exist: skipped
		LinkKey("contoso.private.postgres.database.azure.com", "app"): nil,
		"bogus/kind": json.RawMessage(`{}`),
	})
	if len(problems) != 1 || problems[0].Key != "bogus/kind" {
		t.Fatalf("want one problem, the bogus key: %v", problems)
	}
	if !reflect.DeepEqual(base, pristine) {
		t.Fatal("Overlay must not modify the file's topology")
	}
	if got.Servers.Len() != 2 || got.Servers.At(1).Name != "db-two" {
		t.Fatalf("servers: %+v", got.Servers)
	}
	one := got.Servers.At(0)
	if len(one.FirewallRules) != 1 || one.FirewallRules[0].Name != "home" {
		t.Fatalf("s1's rules: %+v", one.FirewallRules)
	}
	if one.Parameters[ParamSSLMinProtocolVersion] != "TLSv1.3" || one.Parameters[ParamRequireSecureTransport] != "on" {
		t.Fatalf("s1's parameters: %v", one.Parameters)
	}
	if len(got.PrivateDNSZones[0].Links) != 0 {
		t.Fatal("the link must be gone")
	}
	if vs, _ := Validate(got); len(vs) != 0 {
		t.Fatalf("the result must be valid: %v", vs)
	}
}

// SPEC: C5
func TestOverlayServerUpdateKeepsRulesAndDeleteTakesThem(t *testing.T) {
	base := parseBase(t)
	upd, _ := json.Marshal(Server{Region: "eastus2", Access: AccessPublic, Backends: Backends{Primary: "10.9.0.7:5432"}})
	got, _ := Overlay(base, map[string]json.RawMessage{ServerKey("db-one"): upd})
	if got.Servers.At(0).Backends.Primary != "10.9.0.7:5432" || len(got.Servers.At(0).FirewallRules) != 1 || got.Servers.At(0).Parameters == nil {
		t.Fatalf("an update replaces the server's own fields and keeps its rules and parameters: %+v", got.Servers.At(0))
	}
	changes := map[string]json.RawMessage{ServerKey("db-one"): nil}
	for _, k := range ChildKeys(base, ServerKey("db-one")) {
		changes[k] = nil
	}
	if len(changes) != 3 {
		t.Fatalf("s1 has a rule and a parameter as children: %v", changes)
	}
	got, _ = Overlay(base, changes)
	if got.Servers.Len() != 0 {
		t.Fatal("the server must be deleted")
	}
	// Created again, it starts without the old rule: the tombstones hold.
	changes[ServerKey("db-one")] = upd
	got, _ = Overlay(base, changes)
	if got.Servers.Len() != 1 || len(got.Servers.At(0).FirewallRules) != 0 || got.Servers.At(0).Parameters != nil {
		t.Fatalf("a server created again must not inherit the deleted rules: %+v", got.Servers)
	}
}

// SPEC: C5
func TestKeysNamesEveryObjectOfTheFile(t *testing.T) {
	keys := Keys(parseBase(t))
	for _, k := range []string{ServerKey("db-one"), FirewallRuleKey("db-one", "office"), ParameterKey("db-one", ParamRequireSecureTransport),
		VNetKey("app"), SubnetKey("app", "db"), ZoneKey("contoso.private.postgres.database.azure.com"), LinkKey("contoso.private.postgres.database.azure.com", "app")} {
		if !keys[k] {
			t.Errorf("Keys lacks %s", k)
		}
	}
}

// Defines answers for one key what Keys says of all: every key of the
// file's objects, and none of the same keys with a name changed.
//
// SPEC: C5
func TestDefinesAgreesWithKeys(t *testing.T) {
	base := parseBase(t)
	byName := func(name string) *Server {
		for _, s := range base.Servers.All() {
			if s.Name == name {
				return s
			}
		}
		return nil
	}
	keys := Keys(base)
	if len(keys) < 7 {
		t.Fatalf("the base topology has too few objects to test with: %v", keys)
	}
	for k := range keys {
		if !Defines(base, byName, k) {
			t.Errorf("Defines(%s) = false; Keys has it", k)
		}
		for _, other := range []string{k + "x", strings.Replace(k, "/", "/x", 1), k + "/firewallRule/x", "x" + k} {
			if Defines(base, byName, other) != keys[other] {
				t.Errorf("Defines(%s) = %v; Keys says %v", other, !keys[other], keys[other])
			}
		}
	}
}

// Overlay decodes values that come from peers: any key and value must give
// a result or a problem, never a panic, and the same result every time.
func FuzzOverlay(f *testing.F) {
	f.Add("server/db-one/firewallRule/x", `{"startIpAddress":"1.2.3.4","endIpAddress":"1.2.3.5"}`, "vnet/app/subnet/db", "")
	f.Add("server/db-one", `{"access":"private"}`, "privateDnsZone/contoso.private.postgres.database.azure.com/link/app", "{}")
	f.Add("vnet/new", `{"region":"eastus2","addressSpaces":["10.1.0.0/16"]}`, "server/db-one/parameter/ssl_min_protocol_version", `"TLSv1.3"`)
	base, _, err := Parse("base.yaml", []byte(overlayBase))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		changes := map[string]json.RawMessage{k1: json.RawMessage(v1), k2: json.RawMessage(v2)}
		if v2 == "" {
			changes[k2] = nil
		}
		a, _ := Overlay(base, changes)
		b, _ := Overlay(base, changes)
		if !reflect.DeepEqual(a, b) {
			t.Fatal("the same changes must give the same topology")
		}
		Validate(a)
	})
}

// SPEC: C5
func TestParseKey(t *testing.T) {
	for _, c := range []struct {
		key  string
		want Key
		ok   bool
	}{
		{"server/a", Key{Kind: KindServer, Name: "a"}, true},
		{FirewallRuleKey("a", "r"), Key{Kind: KindServer, Name: "a", ChildKind: KindFirewallRule, Child: "r"}, true},
		{LinkKey("Z.example", "v"), Key{Kind: KindZone, Name: "z.example", ChildKind: KindLink, Child: "v"}, true},
		{"server/", Key{}, false},
		{"server/a/firewallRule/", Key{}, false},
		{"server/a/firewallRule", Key{}, false},
		{"server", Key{}, false},
		{"", Key{}, false},
	} {
		got, ok := ParseKey(c.key)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v, %v", c.key, got, ok, c.want, c.ok)
		}
	}
	touched := ServersTouched(map[string]json.RawMessage{ServerKey("a"): nil, ParameterKey("b", "p"): nil, VNetKey("v"): nil, "bad": nil})
	if len(touched) != 2 || !touched["a"] || !touched["b"] {
		t.Errorf("ServersTouched = %v, want a and b", touched)
	}
}
