package topology

import (
	"os"
	"strings"
	"testing"
)

// SPEC: T6 T8 F1
func TestParseReportsEveryViolationWithLine(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	text = strings.Replace(text, "cidr: 10.0.1.0/28", "cidr: 10.0.1.0/29", 1)                       // line 14
	text = strings.Replace(text, "{name: web,", "{name: GatewaySubnet,", 1)                         // line 15
	text = strings.Replace(text, "startIpAddress: 203.0.113.1,", "startIpAddress: 2001:db8::1,", 1) // line 39
	_, _, err = Parse("bad.yaml", []byte(text))
	vs, ok := err.(Violations)
	if !ok {
		t.Fatalf("want Violations, got %T %v", err, err)
	}
	want := []string{
		`bad.yaml:14: T6: subnet "db" in vnet "app-vnet": cidr: 10.0.1.0/29 is a /29`,
		`bad.yaml:15: T8: subnet "GatewaySubnet" in vnet "app-vnet": name: the name GatewaySubnet is reserved`,
		`bad.yaml:39: F1: firewall rule "office" of server "reports-db": startIpAddress: "2001:db8::1" is an IPv6 address`,
	}
	got := vs.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestParseRefusesUnknownFieldWithLine(t *testing.T) {
	text := "regions:\n  - name: eastus2\n    gateways: [192.0.2.1, 192.0.2.2]\n    gatway: 1\n"
	_, _, err := Parse("t.yaml", []byte(text))
	if err == nil || !strings.Contains(err.Error(), `t.yaml:4: schema: unknown field "gatway" in a region`) {
		t.Fatalf("want the unknown field named with its line, got %v", err)
	}
}

func TestParseReportsSyntaxErrorWithLine(t *testing.T) {
	_, _, err := Parse("t.yaml", []byte("regions:\n  - name: [\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:") {
		t.Fatalf("want a syntax error with the file name, got %v", err)
	}
}

func TestParseRefusesWrongType(t *testing.T) {
	_, _, err := Parse("t.yaml", []byte("regions:\n  - name: eastus2\n    gateways: 7\n"))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:3") {
		t.Fatalf("want a type error at line 3, got %v", err)
	}
}
