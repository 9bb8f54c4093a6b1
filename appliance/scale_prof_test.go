package appliance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/pgplane/pgplane/topology"
)

func TestHeapScale(t *testing.T) {
	path := os.Getenv("PGPLANE_SCALE_TOPOLOGY")
	if path == "" {
		t.Skip()
	}
	a, err := New(testOptions(path, func(o *Options) { o.State.Dir = filepath.Join(t.TempDir(), "state") }), nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	f, _ := os.Create("/tmp/heap.prof")
	pprof.WriteHeapProfile(f)
	f.Close()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Println("heap inuse MB", ms.HeapInuse/1e6, a.Snapshot().Serial)
}

func BenchmarkChangeScale(b *testing.B) {
	path := os.Getenv("PGPLANE_SCALE_TOPOLOGY")
	if path == "" {
		b.Skip()
	}
	dir := b.TempDir()
	a, err := New(testOptions(path, func(o *Options) { o.State.Dir = filepath.Join(dir, "state") }), nil)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		err := a.Change(map[string]json.RawMessage{topology.FirewallRuleKey("pub-00001", fmt.Sprint("r", i%2)): json.RawMessage(`{"startIpAddress":"10.0.0.1","endIpAddress":"10.0.0.1"}`)})
		if err != nil {
			b.Fatal(err)
		}
	}
}
