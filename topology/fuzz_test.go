package topology

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary text to the topology loader: it must return a
// topology or an error, never panic, and what it accepts must make a snapshot.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("regions: [{name: a, gateways: [1.2.3.4, 1.2.3.5]}]"))
	f.Add([]byte("vnets:\n  - &a {name: x}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		topo, _, err := Parse("fuzz.yaml", text)
		if err != nil {
			return
		}
		if _, err := NewSnapshot(topo, State{}, 1); err != nil {
			t.Fatalf("a valid topology must make a snapshot: %v", err)
		}
	})
}
