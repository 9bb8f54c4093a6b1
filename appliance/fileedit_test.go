package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pgplane/pgplane/topology"
)

// An edit of the topology file that changes servers alone is served at
// their cost: the servers it did not touch keep their index entries, the
// edited ones come with their run-time changes laid over them, and an edit
// that breaks a rule is refused with its line and changes nothing.
//
// SPEC: A1 A2
func TestFileEditOfServersServedAtTheirCost(t *testing.T) {
	dir, path := topologyFileIn(t, nil)
	a := startTestAppliance(t, path, func(o *Options) { o.State.Dir = filepath.Join(dir, "state") })
	defer a.Stop()
	rule := topology.FirewallRuleKey("reports-db", "office")
	if err := a.Change(map[string]json.RawMessage{rule: json.RawMessage(`{"startIpAddress":"10.1.0.1","endIpAddress":"10.1.0.9"}`)}); err != nil {
		t.Fatal(err)
	}
	before := a.Snapshot()
	orders := before.Server("orders-db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), `backends: {primary: "127.0.0.1:55432"}
    firewallRules:`, `backends: {primary: "127.0.0.1:55439"}
    firewallRules:`, 1)
	if edited == string(data) {
		t.Fatal("the dev topology no longer has reports-db's backend line")
	}
	edited += "  - name: added-db\n    region: eastus2\n    access: public\n    backends: {primary: \"127.0.0.1:55440\"}\n"
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(edited)
	if err := a.desired.load(); err != nil {
		t.Fatal(err)
	}
	if how := a.desired.loadedHow(); how != "servers changed: 2, checked and indexed alone" {
		t.Fatalf("the load says it went %q", how)
	}
	snap := a.Snapshot()
	if snap.Server("orders-db") != orders {
		t.Fatal("a server the edit did not touch was indexed again (the whole topology was rebuilt)")
	}
	reports := snap.Server("reports-db")
	if reports == nil || reports.Server.Backends.Primary != "127.0.0.1:55439" {
		t.Fatalf("the edited server is not served as edited: %+v", reports)
	}
	if !slices.ContainsFunc(reports.Server.FirewallRules, func(r topology.FirewallRule) bool { return r.Name == "office" }) {
		t.Fatal("the edited server lost the firewall rule added at run time")
	}
	if snap.Server("added-db") == nil || snap.Serial <= before.Serial {
		t.Fatalf("the server added to the file is not served (serial %d after %d)", snap.Serial, before.Serial)
	}

	// A duplicate address in the subnet: refused whole, with its line.
	broken := strings.Replace(edited, "addresses: {primary: 127.0.1.4, standby: 127.0.1.5}", "addresses: {primary: 127.0.1.4, standby: 127.0.1.4}", 1)
	write(broken)
	err = a.desired.load()
	var vs topology.Violations
	if !errors.As(err, &vs) || vs[0].Line == 0 {
		t.Fatalf("an edit that breaks a rule was not refused with its line: %v", err)
	}
	if a.Snapshot() != snap {
		t.Fatal("a refused edit changed the snapshot")
	}

	// An edit refused for another server's sake, then mended: the server
	// it changed is served as the file now has it, though the refused
	// read decoded it already.
	again := strings.Replace(broken, `backends: {primary: "127.0.0.1:55439"}`, `backends: {primary: "127.0.0.1:55441"}`, 1)
	write(again)
	if err := a.desired.load(); err == nil {
		t.Fatal("the broken address was not refused")
	}
	write(strings.Replace(again, "standby: 127.0.1.4}", "standby: 127.0.1.5}", 1))
	if err := a.desired.load(); err != nil {
		t.Fatal(err)
	}
	if got := a.Snapshot().Server("reports-db").Server.Backends.Primary; got != "127.0.0.1:55441" {
		t.Fatalf("reports-db is served with backend %s after the mended edit, want 127.0.0.1:55441", got)
	}

	// The same with a VNet changed in the refused file: the mended file
	// differs from the refused one in a server alone, but from the file
	// served in its VNet too, which is served.
	mended := strings.Replace(again, "standby: 127.0.1.4}", "standby: 127.0.1.5}", 1)
	withVNet := strings.Replace(again, "addressSpaces: [127.0.2.0/24]", "addressSpaces: [127.0.2.0/24, 127.0.4.0/24]", 1)
	write(withVNet)
	if err := a.desired.load(); err == nil {
		t.Fatal("the broken address was not refused")
	}
	write(strings.Replace(mended, "addressSpaces: [127.0.2.0/24]", "addressSpaces: [127.0.2.0/24, 127.0.4.0/24]", 1))
	if err := a.desired.load(); err != nil {
		t.Fatal(err)
	}
	snap = a.Snapshot()
	if view := snap.ViewOf(netip.Addr{}, netip.MustParseAddr("127.0.4.7")); view < 0 || snap.VNets[view].Name != "hub-vnet" {
		t.Fatal("the VNet changed in a refused file and kept in the mended one is not served")
	}
}

// Edits of servers served at their cost give what the whole load gives:
// random scripts of one to three servers edited, added and removed
// anywhere in the file at once (and now and then a duplicate name, two
// servers swapped or a server in a region that does not exist, which go
// the whole way), each compared with a fresh parse of the same file. The
// step after a refused file starts from the file served before it.
//
// SPEC: A1 A2
func TestFileEditsOfServersMatchWholeLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 29))
	atCost := fileEdits(t, 300, rng.IntN)
	if atCost < 120 {
		t.Fatalf("only %d of 300 edits were served at the servers' cost", atCost)
	}
	t.Logf("%d of 300 edits served at the servers' cost", atCost)
}

// FuzzFileEditsOfServers is TestFileEditsOfServersMatchWholeLoad with the
// script's choices read from the input.
//
// SPEC: A1 A2
func FuzzFileEditsOfServers(f *testing.F) {
	fuzzEdits(f, fileEdits, []byte{0, 3, 1, 5, 7, 2, 2, 1, 9, 1, 4, 0, 8, 8, 6, 3}, []byte{9, 1, 0, 2, 9, 0, 1, 7, 3, 3, 3, 8, 0, 5, 5, 5, 2, 6, 1})
}

// fileEdits runs a script of edits of a topology file's servers, pick
// making its choices (a number below n), and checks each load against a
// whole parse of the same file; it returns how many edits were served at
// the servers' cost.
func fileEdits(t testing.TB, steps int, pick func(n int) int) (atCost int) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.yaml")
	devData, err := os.ReadFile(devTopology)
	if err != nil {
		t.Fatal(err)
	}
	head := string(devData[:strings.Index(string(devData), "\nservers:")+1])
	server := func(name, region string, port int) string {
		return fmt.Sprintf("  - name: %s\n    region: %s\n    access: public\n    backends: {primary: \"127.0.0.1:%d\"}\n    firewallRules:\n      - {name: r, startIpAddress: 10.0.%d.1, endIpAddress: 10.0.%d.9}\n", name, region, port, port%250, port%250)
	}
	nameOf := func(sv string) string { return sv[len("  - name: ") : len("  - name: ")+4] }
	var servers []string
	for i := range 40 {
		servers = append(servers, server(fmt.Sprintf("s%03d", i), "eastus2", 20000+i))
	}
	text := func() string { return head + "servers:\n" + strings.Join(servers, "") }
	if err := os.WriteFile(path, []byte(text()), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := New(NewOptions(path, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	next, good, mend := 40, slices.Clone(servers), false
	for step := range steps {
		before := text()
		if mend {
			// The last file was refused: this step starts from the one
			// served before it, so the edit mends it.
			servers, mend = slices.Clone(good), false
		}
		for range 1 + pick(3) {
			switch op := pick(12); {
			case op < 4 && len(servers) > 0: // edit
				i := pick(len(servers))
				servers[i] = server(nameOf(servers[i]), "eastus2", 30000+pick(10000))
			case op < 7: // add anywhere
				servers = slices.Insert(servers, pick(len(servers)+1), server(fmt.Sprintf("s%03d", next), "eastus2", 20000+next))
				next++
			case op < 9 && len(servers) > 0: // remove
				i := pick(len(servers))
				servers = slices.Delete(servers, i, i+1)
			case op < 10 && len(servers) > 0: // a region that does not exist: refused
				i := pick(len(servers))
				servers[i] = server(nameOf(servers[i]), "nowhere", 30000+pick(10000))
			case len(servers) > 1: // a duplicate name, or two servers swapped
				i, j := pick(len(servers)), pick(len(servers))
				if pick(2) == 0 {
					servers = slices.Insert(servers, j, servers[i])
				} else {
					servers[i], servers[j] = servers[j], servers[i]
				}
			}
		}
		// A server in the file before and after, with the same text: its
		// index entry stays when the edit is served at the servers' cost.
		var untouched *topology.ServerInfo
		for _, sv := range servers {
			if strings.Count(text(), sv) == 1 && strings.Count(before, sv) == 1 {
				untouched = a.Snapshot().Server(nameOf(sv))
				break
			}
		}
		whole := loadBesideWhole(t, a, path, text(), step)
		if whole == nil {
			mend = true
			continue
		}
		good = slices.Clone(servers)
		if untouched != nil && a.Snapshot().Server(untouched.Server.Name) == untouched {
			atCost++
		}
		got, want := a.Snapshot().Topology.Servers.Slice(), whole.Servers.Slice()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: served servers differ from the whole parse:\n%s", step, serverNames(got, want))
		}
		wholeSnap, err := topology.NewSnapshot(whole, topology.State{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range want {
			g, w := a.Snapshot().Server(s.Name), wholeSnap.Server(s.Name)
			if g == nil || !reflect.DeepEqual(*g.Server, *w.Server) || g.Region.Name != w.Region.Name || g.Backend() != w.Backend() {
				t.Fatalf("step %d: %s is indexed as %+v, the whole load indexes %+v", step, s.Name, g, w)
			}
		}
	}
	return atCost
}

func serverNames(got, want []*topology.Server) string {
	var b strings.Builder
	for i := range max(len(got), len(want)) {
		g, w := "-", "-"
		if i < len(got) {
			g = fmt.Sprintf("%+v", *got[i])
		}
		if i < len(want) {
			w = fmt.Sprintf("%+v", *want[i])
		}
		fmt.Fprintf(&b, "%d: served %s\n   whole  %s\n", i, g, w)
	}
	return b.String()
}

// Edits of VNets and private DNS zones served at their cost give what the
// whole load gives: random scripts of VNets edited (a second address
// space), added anywhere and removed, and zones' links changed, added and
// removed (a removed VNet still linked, or a link to one that does not
// exist, is refused and mended from the file served), each compared with
// a whole parse of the same file, view by view and zone by zone.
//
// SPEC: A1 A2 D4
func TestFileEditsOfNetworkMatchWholeLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 17))
	atCost := networkEdits(t, 200, rng.IntN)
	if atCost < 60 {
		t.Fatalf("only %d of 200 edits were served at their cost", atCost)
	}
	t.Logf("%d of 200 edits served at their cost", atCost)
}

// FuzzFileEditsOfNetwork is TestFileEditsOfNetworkMatchWholeLoad with the
// script's choices read from the input.
//
// SPEC: A1 A2 D4
func FuzzFileEditsOfNetwork(f *testing.F) {
	fuzzEdits(f, networkEdits, []byte{1, 0, 3, 2, 5, 1, 0, 4, 0, 6, 1, 1, 7, 0, 2, 2, 3, 1}, []byte{0, 6, 2, 1, 1, 9, 0, 4, 3, 1, 7, 1, 3, 0, 2, 5, 5})
}

// networkEdits runs a script of edits of a topology file's VNets and
// zones, pick making its choices (a number below n), and checks each load
// against a whole load of the same file; it returns how many edits were
// served at their cost.
func networkEdits(t testing.TB, steps int, pick func(n int) int) (atCost int) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.yaml")
	devData, err := os.ReadFile(devTopology)
	if err != nil {
		t.Fatal(err)
	}
	dev := string(devData)
	head := dev[:strings.Index(dev, "\nvnets:")+1]
	devVNets := dev[strings.Index(dev, "\nvnets:")+len("\nvnets:\n") : strings.Index(dev, "\nprivateDnsZones:")+1]
	devZones := dev[strings.Index(dev, "\nprivateDnsZones:")+len("\nprivateDnsZones:\n") : strings.Index(dev, "\nservers:")+1]
	servers := dev[strings.Index(dev, "\nservers:")+1:]
	vnet := func(i int, wide bool) string {
		spaces := fmt.Sprintf("127.20.%d.0/24", i)
		if wide {
			spaces += fmt.Sprintf(", 127.21.%d.0/24", i)
		}
		return fmt.Sprintf("  - name: v%02d\n    region: eastus2\n    addressSpaces: [%s]\n", i, spaces)
	}
	zone := func(i int, links []int) string {
		var names []string
		for _, l := range links {
			names = append(names, fmt.Sprintf("v%02d", l))
		}
		return fmt.Sprintf("  - name: z%02d.private.postgres.database.azure.com\n    links: [%s]\n", i, strings.Join(names, ", "))
	}
	type zoneDef struct {
		i     int
		links []int
	}
	var vnets []int // VNet numbers in file order; wide ones are kept in a set
	wide := map[int]bool{}
	var zones []zoneDef
	for i := range 12 {
		vnets = append(vnets, i)
	}
	for i := range 4 {
		zones = append(zones, zoneDef{i, []int{i, i + 4}})
	}
	text := func() string {
		var b strings.Builder
		b.WriteString(head + "vnets:\n" + devVNets)
		for _, v := range vnets {
			b.WriteString(vnet(v, wide[v]))
		}
		b.WriteString("privateDnsZones:\n" + devZones)
		for _, z := range zones {
			b.WriteString(zone(z.i, z.links))
		}
		b.WriteString(servers)
		return b.String()
	}
	if err := os.WriteFile(path, []byte(text()), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := New(NewOptions(path, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		vnets []int
		wide  map[int]bool
		zones []zoneDef
	}
	save := func() state {
		zs := make([]zoneDef, len(zones))
		for i, z := range zones {
			zs[i] = zoneDef{z.i, slices.Clone(z.links)}
		}
		return state{slices.Clone(vnets), maps.Clone(wide), zs}
	}
	good, mend, nextVNet, nextZone := save(), false, 12, 4
	for step := range steps {
		if mend {
			vnets, wide, zones, mend = good.vnets, good.wide, good.zones, false
			good = save()
		}
		for range 1 + pick(2) {
			switch op := pick(8); {
			case op < 2 && len(vnets) > 0: // a VNet's address spaces
				v := vnets[pick(len(vnets))]
				wide[v] = !wide[v]
			case op < 4: // a VNet added anywhere
				vnets = slices.Insert(vnets, pick(len(vnets)+1), nextVNet)
				nextVNet++
			case op < 5 && len(vnets) > 0: // a VNet removed (refused while a zone links it)
				i := pick(len(vnets))
				vnets = slices.Delete(vnets, i, i+1)
			case op < 7 && len(zones) > 0 && len(vnets) > 0: // a zone's links
				z := &zones[pick(len(zones))]
				z.links = []int{vnets[pick(len(vnets))]}
				if pick(2) == 0 {
					z.links = append(z.links, nextVNet+7) // no such VNet: refused
				}
			case op < 8 && len(vnets) > 0: // a zone added or removed
				if pick(2) == 0 || len(zones) == 0 {
					zones = slices.Insert(zones, pick(len(zones)+1), zoneDef{nextZone, []int{vnets[pick(len(vnets))]}})
					nextZone++
				} else {
					i := pick(len(zones))
					zones = slices.Delete(zones, i, i+1)
				}
			}
		}
		orders := a.Snapshot().Server("orders-db")
		whole := loadBesideWhole(t, a, path, text(), step)
		if whole == nil {
			mend = true
			continue
		}
		good = save()
		snap := a.Snapshot()
		if snap.Server("orders-db") == orders {
			atCost++ // app-vnet and the contoso zone did not change: orders-db kept its entry
		}
		wholeSnap, err := topology.NewSnapshot(whole, topology.State{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.VNets) != len(wholeSnap.VNets) {
			t.Fatalf("step %d: %d views served, the whole load makes %d", step, len(snap.VNets), len(wholeSnap.VNets))
		}
		for i, w := range wholeSnap.VNets {
			g := snap.VNets[i]
			if g.Name != w.Name || !reflect.DeepEqual(g.Spaces, w.Spaces) || g.Index != i {
				t.Fatalf("step %d: view %d is %s %v (index %d), the whole load's %s %v", step, i, g.Name, g.Spaces, g.Index, w.Name, w.Spaces)
			}
			for name, wz := range wholeSnap.Zones {
				gz := snap.Zones[name]
				if gz == nil || gz.LinkedTo(i) != wz.LinkedTo(i) {
					t.Fatalf("step %d: zone %s linked to view %d (%s): served %v, whole load %v", step, name, i, w.Name, gz != nil && gz.LinkedTo(i), wz.LinkedTo(i))
				}
			}
		}
		if len(snap.Zones) != len(wholeSnap.Zones) {
			t.Fatalf("step %d: %d zones served, the whole load has %d", step, len(snap.Zones), len(wholeSnap.Zones))
		}
		si := snap.Server("orders-db")
		if si == nil || si.VNet == nil || snap.VNets[si.VNet.Index] != si.VNet || si.VNet.Name != "app-vnet" {
			t.Fatalf("step %d: orders-db points at a stale view: %+v", step, si)
		}
		if got, want := snap.Topology.VNets, whole.VNets; !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: served VNets differ from the whole parse", step)
		}
	}
	return atCost
}

// loadBesideWhole writes text to the topology file at path and loads it,
// and parses it whole: both must refuse it or both take it, and a refused
// file must leave the snapshot served as it was. It returns the whole
// parse, or nil when the file was refused.
func loadBesideWhole(t testing.TB, a *Appliance, path, text string, step int) *topology.Topology {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	served := a.Snapshot()
	loadErr := a.desired.load()
	whole, _, parseErr := topology.Parse(path, []byte(text))
	if (loadErr == nil) != (parseErr == nil) {
		t.Fatalf("step %d: the load says %v, a whole parse %v", step, loadErr, parseErr)
	}
	if loadErr != nil {
		if a.Snapshot() != served {
			t.Fatalf("step %d: a refused edit changed the snapshot", step)
		}
		return nil
	}
	return whole
}

// fuzzEdits runs an edit script (fileEdits, networkEdits) with its choices
// read from the fuzzer's input, a byte each.
func fuzzEdits(f *testing.F, run func(t testing.TB, steps int, pick func(n int) int) int, seeds ...[]byte) {
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 64 {
			script = script[:64]
		}
		at := 0
		pick := func(n int) int {
			if at >= len(script) {
				return 0
			}
			at++
			return int(script[at-1]) % n
		}
		run(t, len(script)/3, pick)
	})
}
