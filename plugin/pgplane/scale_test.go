package pgplane

import (
	"os"
	"runtime"
	"testing"

	"github.com/pgplane/pgplane/appliance"
	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/coredns/plugin/file"
)

// BenchmarkAnswersMemory reports the heap the DNS answers of a
// bench-scale topology (100,000 servers) hold beyond the snapshot, per
// server: what the plugin adds to a server's cost in memory (#12).
func BenchmarkAnswersMemory(b *testing.B) {
	dir := b.TempDir()
	g, err := benchkit.GenerateDNS(dir, benchkit.ScaleShape(100000))
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(g.Topology)
	if err != nil {
		b.Fatal(err)
	}
	topo, _, err := topology.Parse("topology.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	snap, err := topology.NewSnapshot(topo, topology.State{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	o := options{ttl: appliance.DefaultTTL, ns: []string{appliance.DefaultNS}}
	var held *answers
	var bytes float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		held = newAnswers(snap, o)
		runtime.GC()
		runtime.ReadMemStats(&after)
		bytes = float64(after.HeapAlloc) - float64(before.HeapAlloc)
	}
	runtime.KeepAlive(held)
	b.ReportMetric(bytes/float64(snap.ServerCount()), "B/server")
}

// BenchmarkStartScale measures what a node does before it can answer, at
// the bench-scale topology of 100,000 servers: the appliance reads and
// checks the topology file and the plugin builds the answers. The
// baseline, in the same run, is CoreDNS's file plugin parsing the same
// records as a zone file, which is what its start does.
func BenchmarkStartScale(b *testing.B) {
	dir := b.TempDir()
	g, err := benchkit.GenerateDNS(dir, benchkit.ScaleShape(100000))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("file", func(b *testing.B) {
		for b.Loop() {
			f, err := os.Open(g.ZoneFile)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := file.Parse(f, "postgres.database.azure.com.", g.ZoneFile, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("pgplane", func(b *testing.B) {
		for b.Loop() {
			opts := appliance.NewOptions(g.Topology, "")
			p := &PGPlane{opts: options{ttl: opts.TTL, ns: opts.Nameservers()}}
			if p.app, err = appliance.New(opts, p.publish); err != nil {
				b.Fatal(err)
			}
			if p.answers.Load() == nil {
				b.Fatal("no answers after the start")
			}
		}
	})
}
