package topology

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/benchkit"
)

// BenchmarkStateMemory reports what a bench-scale topology (100,000
// servers) costs a node in memory once loaded, per server: the live heap
// of the parsed topology and its snapshot (B/server), and the heap pages
// they keep in use (inuse-B/server: live objects and the free room of the
// pages they sit on, what RSS holds after start). The gap between the two
// is how scattered the kept objects are (#12).
func BenchmarkStateMemory(b *testing.B) {
	data := benchScaleFile(b)
	var (
		p          *Parser
		snap       *Snapshot
		live, used float64
	)
	for b.Loop() {
		var before, after runtime.MemStats
		p, snap = nil, nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		p = new(Parser)
		topo, _, err := p.Parse("topology.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		if snap, err = NewSnapshot(topo, State{}, 1); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		live = float64(after.HeapAlloc) - float64(before.HeapAlloc)
		used = float64(after.HeapInuse) - float64(before.HeapInuse)
	}
	runtime.KeepAlive(p)
	runtime.KeepAlive(snap)
	n := float64(snap.ServerCount())
	b.ReportMetric(live/n, "B/server")
	b.ReportMetric(used/n, "inuse-B/server")
}

// BenchmarkGatewayFlipScale measures a region's gateway flip (a failover
// decision) on a bench-scale topology (100,000 servers, 10 regions):
// WithState, which indexes the region's servers again, beside NewSnapshot,
// which a flip cost before (the baseline, reported as full-ns/op).
func BenchmarkGatewayFlipScale(b *testing.B) {
	data := benchScaleFile(b)
	topo, _, err := Parse("topology.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	snap, err := NewSnapshot(topo, State{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := NewSnapshot(topo, State{ActiveGateway: map[string]int{"r0": 1}}, 2); err != nil {
		b.Fatal(err)
	}
	full := time.Since(start)
	i := 0
	for b.Loop() {
		i++
		next, err := snap.WithState(State{ActiveGateway: map[string]int{"r0": i % 2}}, snap.Serial+1)
		if err != nil {
			b.Fatal(err)
		}
		snap = next
	}
	b.ReportMetric(float64(full.Nanoseconds()), "full-ns/op")
}

// benchScaleFile writes a topology file of the bench-scale shape at
// 100,000 servers and returns its text.
func benchScaleFile(b *testing.B) []byte {
	b.Helper()
	g, err := benchkit.GenerateDNS(b.TempDir(), benchkit.ScaleShape(100000))
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(g.Topology)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
