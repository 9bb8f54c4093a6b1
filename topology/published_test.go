package topology

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Every region of Azure's published table loads with gateways: published,
// with its primary address first: 31 regions, 15 with a secondary, East US 2
// with a tertiary too, 16 with a primary only (T1's secondary is optional).
//
// SPEC: T1
func TestEveryPublishedRegionLoads(t *testing.T) {
	var b strings.Builder
	b.WriteString("regions:\n")
	for _, r := range PublishedRegions() {
		fmt.Fprintf(&b, "  - {name: %s, gateways: published}\n", r)
	}
	topo, _, err := Parse("published.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(topo, State{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, r := range PublishedRegions() {
		ri := snap.Regions[r]
		count[len(ri.Gateways)]++
		if ri.Active.String() != PublishedGateways(r)[0] {
			t.Errorf("%s: active %s, want the primary %s", r, ri.Active, PublishedGateways(r)[0])
		}
	}
	if len(PublishedRegions()) != 31 || count[1] != 16 || count[2] != 14 || count[3] != 1 {
		t.Fatalf("published regions by number of addresses: %v of %d", count, len(PublishedRegions()))
	}
	if got := snap.Regions["eastus2"].Gateways; len(got) != 3 || got[2].String() != "52.167.104.0" {
		t.Fatalf("East US 2: %v", got)
	}
	// The topology keeps saying published, in YAML's JSON twin too.
	if j, _ := json.Marshal(topo.Regions[0]); !strings.Contains(string(j), `"gateways":"published"`) {
		t.Fatalf("JSON: %s", j)
	}
	var back Region
	if err := json.Unmarshal([]byte(`{"name":"eastus2","gateways":"published"}`), &back); err != nil || len(back.Addresses()) != 3 {
		t.Fatalf("JSON back: %v %v", back, err)
	}
}

// A region Azure published nothing for is refused with the regions it did.
//
// SPEC: T1
func TestUnpublishedRegionRefused(t *testing.T) {
	_, _, err := Parse("t.yaml", []byte("regions: [{name: mars, gateways: published}]\n"))
	if err == nil || !strings.Contains(err.Error(), `Azure published no gateway addresses for region "mars"`) || !strings.Contains(err.Error(), "eastus2") {
		t.Fatalf("want the T1 refusal naming the published regions, got %v", err)
	}
	_, _, err = Parse("t.yaml", []byte("regions: [{name: eastus2, gateways: publish}]\n"))
	if err == nil || !strings.Contains(err.Error(), "published") {
		t.Fatalf("a misspelt published must be refused and name the word: %v", err)
	}
}
