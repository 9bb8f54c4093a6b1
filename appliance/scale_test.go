package appliance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/topology"
)

// BenchmarkChangeScale measures a run-time change (one firewall rule of one
// server, set and deleted in turn) on the topology named by
// PGPLANE_SCALE_TOPOLOGY, in-process: check, write, index. Generate one with
// make bench-scale (benchmarks/scale keeps its files under -out while it
// runs) and profile with -cpuprofile.
func BenchmarkChangeScale(b *testing.B) {
	a := scaleAppliance(b)
	defer a.Stop()
	var server string // a public server: firewall rules are theirs
	for _, name := range a.Snapshot().ServerNames() {
		if !a.Snapshot().Server(name).Private {
			server = name
			break
		}
	}
	i := 0
	for b.Loop() {
		i++
		value := json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}`)
		if i%2 == 0 {
			value = nil
		}
		if err := a.Change(map[string]json.RawMessage{topology.FirewallRuleKey(server, "bench"): value}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateScale is BenchmarkChangeScale for the change bench-scale
// times: a new public server each time (check, commit, index, serve).
func BenchmarkCreateScale(b *testing.B) {
	a := scaleAppliance(b)
	defer a.Stop()
	i := 0
	for b.Loop() {
		i++
		server := json.RawMessage(`{"region":"r0","access":"public","backends":{"primary":"127.0.0.1:5432"}}`)
		if err := a.Change(map[string]json.RawMessage{topology.ServerKey(fmt.Sprintf("scale-new-%d", i)): server}); err != nil {
			b.Fatal(err)
		}
	}
}

// scaleAppliance starts an appliance over the topology named by
// PGPLANE_SCALE_TOPOLOGY, with a state directory, or skips the benchmark.
func scaleAppliance(b *testing.B) *Appliance {
	b.Helper()
	path := os.Getenv("PGPLANE_SCALE_TOPOLOGY")
	if path == "" {
		b.Skip("PGPLANE_SCALE_TOPOLOGY is not set")
	}
	a, err := New(testOptions(path, func(o *Options) { o.State.Dir = filepath.Join(b.TempDir(), "state") }), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(); err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkCheckScale is the leader's check of a change (one firewall
// rule) and the snapshot it would serve, without Raft: the CPU a change
// costs, apart from the disk (BenchmarkChangeScale's fsync is most of its
// noise on a shared machine).
func BenchmarkCheckScale(b *testing.B) {
	a := scaleAppliance(b)
	defer a.Stop()
	var server string
	for _, name := range a.Snapshot().ServerNames() {
		if !a.Snapshot().Server(name).Private {
			server = name
			break
		}
	}
	change := map[string]json.RawMessage{topology.FirewallRuleKey(server, "bench"): json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}`)}
	for b.Loop() {
		if err := a.desired.check(change); err != nil {
			b.Fatal(err)
		}
		a.desired.mu.Lock()
		checked := a.desired.checked
		a.desired.checked = nil
		_, err := a.desired.current.WithServers(checked.delta, a.desired.current.Serial+1)
		a.desired.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVNetChangeScale is BenchmarkChangeScale for a change of a VNet
// (one created and deleted in turn), which does not go the servers' way.
func BenchmarkVNetChangeScale(b *testing.B) {
	a := scaleAppliance(b)
	defer a.Stop()
	i := 0
	for b.Loop() {
		i++
		value := json.RawMessage(`{"region":"r0","addressSpaces":["127.200.0.0/24"]}`)
		if i%2 == 0 {
			value = nil
		}
		if err := a.Change(map[string]json.RawMessage{topology.VNetKey("bench-vnet"): value}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZoneChangeScale is BenchmarkVNetChangeScale for a private DNS
// zone's link to a VNet, set and deleted in turn.
func BenchmarkZoneChangeScale(b *testing.B) {
	a := scaleAppliance(b)
	defer a.Stop()
	zone := a.Snapshot().Topology.PrivateDNSZones[0].Name
	vnet := a.Snapshot().Topology.VNets[len(a.Snapshot().Topology.VNets)-1].Name
	i := 0
	for b.Loop() {
		i++
		value := json.RawMessage(`{}`)
		if i%2 == 0 {
			value = nil
		}
		if err := a.Change(map[string]json.RawMessage{topology.LinkKey(zone, vnet): value}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileEditScale measures a reload of a 100,000-server topology
// file (the bench-scale shape) after one server's backend was edited:
// "servers" is the edit alone, served at the cost of that server;
// "network" is a VNet's text edited (a comment added inside it), served as
// a change of that VNet; "whole" is both at once, which sends the load the
// whole way (decode what changed, validate and index everything): the
// baseline, in the same run.
func BenchmarkFileEditScale(b *testing.B) {
	g, err := benchkit.GenerateDNS(b.TempDir(), benchkit.ScaleShape(100000))
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(g.Topology)
	if err != nil {
		b.Fatal(err)
	}
	text := string(data)
	const backend, vnet = `backends: {primary: "127.10.0.4:5432"}}`, "  - name: vnet-000\n"
	server := strings.Replace(text, backend, `backends: {primary: "127.10.0.4:5433"}}`, 1)
	network := strings.Replace(text, vnet, vnet+"    # edited\n", 1)
	whole := strings.Replace(server, vnet, vnet+"    # edited\n", 1)
	if server == text || whole == server || network == text {
		b.Fatal("the generated topology no longer has the lines the benchmark edits")
	}
	for _, c := range []struct{ name, edited string }{{"servers", server}, {"network", network}, {"whole", whole}} {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "topology.yaml")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				b.Fatal(err)
			}
			a, err := New(NewOptions(path, ""), nil)
			if err != nil {
				b.Fatal(err)
			}
			versions := []string{c.edited, text}
			i := 0
			for b.Loop() {
				b.StopTimer()
				os.WriteFile(path, []byte(versions[i%2]), 0o644)
				i++
				b.StartTimer()
				if err := a.desired.load(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
