package layermap

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// A chain of copies holds what a plain map changed alike holds, across
// merges, and an older copy keeps what it held.
func TestMatchesAPlainMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	plain := map[string]int{}
	for i := range 500 {
		plain[fmt.Sprint("k", i)] = i
	}
	m := Of(maps.Clone(plain))
	for step := range 2000 {
		before, beforePlain := m, maps.Clone(plain)
		set := map[string]int{}
		var del []string
		for range rng.IntN(4) + 1 {
			k := fmt.Sprint("k", rng.IntN(700))
			if rng.IntN(3) == 0 {
				del = append(del, k)
			} else {
				set[k] = step
			}
		}
		m = m.With(set, del)
		for _, k := range del {
			delete(plain, k)
		}
		maps.Copy(plain, set)
		if got := maps.Collect(m.All()); !maps.Equal(got, plain) || m.Len() != len(plain) {
			t.Fatalf("step %d: %d entries, want %d", step, m.Len(), len(plain))
		}
		if got := maps.Collect(before.All()); !maps.Equal(got, beforePlain) {
			t.Fatalf("step %d: an older copy changed", step)
		}
		for k, v := range plain {
			if got, ok := m.Get(k); !ok || got != v {
				t.Fatalf("step %d: Get(%s) = %d %v, want %d", step, k, got, ok, v)
			}
		}
	}
}
