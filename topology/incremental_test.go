package topology

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/pgplane/pgplane/internal/benchkit"
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

// Servers hold one copy of the names they share (region, access, VNet,
// subnet, zone): the topology's own, whether a file is parsed whole, parsed
// by a Parser, or re-parsed after an edit, and after collections ran
// between servers (unique.Make's entries did not survive them).
//
// SPEC: A1
func TestServersShareTheTopologysNames(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data) + `  - name: orders-db-2
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}
    addresses: {primary: 10.0.1.6}
    backends: {primary: "10.0.1.6:5432"}
`
	same := func(a, b string) bool { return len(a) > 0 && unsafe.StringData(a) == unsafe.StringData(b) }
	check := func(how string, topo *Topology) {
		t.Helper()
		vnet := topo.VNets[0]
		for _, srv := range topo.Servers.All() {
			if !same(srv.Region, topo.Regions[0].Name) || !same(srv.Access, AccessPublic) && !same(srv.Access, AccessPrivate) {
				t.Errorf("%s: server %s holds its own copy of its region or access", how, srv.Name)
			}
			if n := srv.Network; n != nil && (!same(n.VNet, vnet.Name) || !same(n.Subnet, vnet.Subnets[0].Name) || !same(n.PrivateDNSZone, topo.PrivateDNSZones[0].Name)) {
				t.Errorf("%s: server %s holds its own copy of its VNet, subnet or zone", how, srv.Name)
			}
		}
	}
	whole, _, err := Parse("f.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	check("Parse", whole)
	var p Parser
	first, _, err := p.Parse("f.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	check("Parser", first)
	runtime.GC()
	edited, _, err := p.Parse("f.yaml", []byte(strings.Replace(text, "10.0.1.6:5432", "10.0.1.6:5433", 1)))
	if err != nil {
		t.Fatal(err)
	}
	check("Parser after an edit", edited)
}

// A file of thousands of parts is decoded on several goroutines: the
// result is Parse's, and a part that does not decode, far down the file,
// gives Parse's error.
//
// SPEC: A1
func TestParserDecodesLargeFilesAsParse(t *testing.T) {
	g, err := benchkit.GenerateDNS(t.TempDir(), benchkit.DNSScale{Servers: 4000, Zones: 400, VNets: 200, Regions: 4})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(g.Topology)
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(prev)
	want, _, err := Parse("f.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var p Parser
	got, _, err := p.Parse("f.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatal("the Parser's topology of a large file differs from Parse's")
	}
	bad := []byte(strings.Replace(string(data), "name: pub-01999,", "name: pub-01999, colour: blue,", 1))
	if bytes.Equal(bad, data) {
		t.Fatal("test file: the last public server is not where the test expects it")
	}
	_, _, wantErr := Parse("f.yaml", bad)
	_, _, gotErr := new(Parser).Parse("f.yaml", bad)
	if wantErr == nil || fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
		t.Fatalf("an unknown field in the last server:\nParse:  %v\nParser: %v", wantErr, gotErr)
	}
}

// plainASCII's word-at-a-time check answers as the byte-at-a-time one does,
// for every byte value at every place in a word.
func TestPlainASCIIMatchesBytes(t *testing.T) {
	base := []byte("servers:\n  - {name: a, region: r0}\n")
	for at := range len(base) {
		for b := range 256 {
			data := slices.Clone(base)
			data[at] = byte(b)
			if got, want := plainASCII(data), plainBytes(data); got != want {
				t.Fatalf("byte %#x at %d: plainASCII %v, byte by byte %v", b, at, got, want)
			}
		}
	}
}

// BenchmarkPlainASCII measures the Parser's first pass over a file's text,
// word at a time against byte at a time ("bytes", the baseline).
func BenchmarkPlainASCII(b *testing.B) {
	line := "  - {name: priv-00000, region: r0, access: private, network: {vnet: vnet-000, subnet: db}, backends: {primary: \"127.10.0.4:5432\"}}\n"
	data := []byte(strings.Repeat(line, 1<<20/len(line)))
	for _, c := range []struct {
		name string
		f    func([]byte) bool
	}{{"words", plainASCII}, {"bytes", plainBytes}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if !c.f(data) {
					b.Fatal("plain text taken for not plain")
				}
			}
		})
	}
}

// A server that refers to another's anchor follows an edit of the anchor:
// a file with an anchor or an alias is parsed whole, so the Parser cannot
// keep the alias's old value as an unchanged part.
//
// SPEC: A1
func TestParserFollowsAnAliasToAnotherServer(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Replace(string(data), "    firewallRules:\n      - {name: office,", "    firewallRules: &rules\n      - {name: office,", 1)
	first += "  - name: audit-db\n    region: eastus2\n    access: public\n    backends: {primary: \"127.0.0.1:55434\"}\n    firewallRules: *rules\n"
	second := strings.Replace(first, "startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.9", "startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.20", 1)
	if first == string(data) || second == first {
		t.Fatal("testdata/valid.yaml no longer has the lines the test edits")
	}
	var p Parser
	for i, text := range []string{first, second} {
		got, _, err := p.Parse("f.yaml", []byte(text))
		if err != nil {
			t.Fatalf("version %d: %v", i+1, err)
		}
		want, _, err := Parse("f.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("version %d: the Parser's topology differs from Parse's", i+1)
		}
		audit := got.Servers.At(got.Servers.Len() - 1)
		if end := audit.FirewallRules[0].EndIPAddress; audit.Name != "audit-db" || end != []string{"203.0.113.9", "203.0.113.20"}[i] {
			t.Fatalf("version %d: %s's first rule ends at %s", i+1, audit.Name, end)
		}
	}
}
