package appliance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgplane/pgplane/topology"
)

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
