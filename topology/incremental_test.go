package topology

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// A re-parse after an edit decodes only the parts whose text changed: every
// other server is the one decoded before (the same pointer), including
// after a null item and across two edits in a row, and the result equals
// Parse's.
//
// SPEC: A1
func TestParserReusesUnchangedParts(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A null item ahead of the servers shifts no server's place in the list.
	first := strings.Replace(string(data), "servers:\n", "servers:\n  -\n", 1)
	var p Parser
	t1, _, err := p.Parse("f.yaml", []byte(first))
	if err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(first, `primary: "127.0.0.1:55432"`, `primary: "127.0.0.1:55433"`, 1)
	t2, _, err := p.Parse("f.yaml", []byte(second))
	if err != nil {
		t.Fatal(err)
	}
	third := strings.Replace(second, "    gateways: [192.0.2.20, 192.0.2.21, 192.0.2.22]", "    gateways: [192.0.2.20, 192.0.2.21]", 1)
	t3, _, err := p.Parse("f.yaml", []byte(third))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name          string
		before, after *Topology
		edited        string
	}{{"server edit", t1, t2, "reports-db"}, {"region edit", t2, t3, ""}} {
		if step.after.Servers.Len() != step.before.Servers.Len() {
			t.Fatalf("%s: %d servers, want %d", step.name, step.after.Servers.Len(), step.before.Servers.Len())
		}
		for i, srv := range step.after.Servers.All() {
			reused := srv == step.before.Servers.At(i)
			if srv.Name == step.edited && reused {
				t.Errorf("%s: server %s was edited but not decoded again", step.name, srv.Name)
			}
			if srv.Name != step.edited && !reused {
				t.Errorf("%s: server %s did not change but was decoded again", step.name, srv.Name)
			}
		}
	}
	if got := len(t3.Regions[1].Gateways); got != 2 {
		t.Errorf("the edited region has %d gateways, want 2", got)
	}
	if &t3.VNets[0].Subnets[0] != &t2.VNets[0].Subnets[0] {
		t.Error("an unchanged VNet was decoded again")
	}
	want, _, err := Parse("f.yaml", []byte(third))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, t3) {
		t.Fatalf("the Parser's topology differs from Parse's:\n%#v\n%#v", want, t3)
	}
}
