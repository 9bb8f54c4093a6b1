// Package layermap is a map from strings to values that is copied at the
// cost of what changes: a base map shared by every copy, and a small map of
// the entries set or deleted since. A copy with a few changes copies the
// small map; once it grows past a fraction of the base, the two are merged
// into a new base, so lookups stay two probes and the merging costs a
// constant per change on average.
//
// A Map is a value: its methods never change it, and it is safe for
// concurrent readers.
package layermap

import (
	"iter"
	"maps"
)

// Map is a string-keyed map copied by layers.
type Map[V any] struct {
	base  map[string]V
	delta map[string]slot[V]
	n     int
}

// slot is a value set in the delta, or a deletion.
type slot[V any] struct {
	v       V
	deleted bool
}

// Of returns a Map holding m, which it takes over: m must not be changed
// after.
func Of[V any](m map[string]V) Map[V] { return Map[V]{base: m, n: len(m)} }

// Get returns the value of k.
func (m Map[V]) Get(k string) (V, bool) {
	if s, ok := m.delta[k]; ok {
		return s.v, !s.deleted
	}
	v, ok := m.base[k]
	return v, ok
}

// Len returns the number of entries.
func (m Map[V]) Len() int { return m.n }

// All returns every entry, in no particular order.
func (m Map[V]) All() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		for k, v := range m.base {
			if _, shadowed := m.delta[k]; shadowed {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
		for k, s := range m.delta {
			if !s.deleted && !yield(k, s.v) {
				return
			}
		}
	}
}

// With returns a copy of m with the entries of set set and the keys of del
// deleted (set wins over del).
func (m Map[V]) With(set map[string]V, del []string) Map[V] {
	next := Map[V]{base: m.base, delta: make(map[string]slot[V], len(m.delta)+len(set)+len(del)), n: m.n}
	maps.Copy(next.delta, m.delta)
	for _, k := range del {
		if _, in := set[k]; in {
			continue
		}
		if _, ok := m.Get(k); ok {
			next.n--
		}
		next.delta[k] = slot[V]{deleted: true}
	}
	for k, v := range set {
		if _, ok := m.Get(k); !ok {
			next.n++
		}
		next.delta[k] = slot[V]{v: v}
	}
	if len(next.delta) > 64+len(next.base)/32 {
		merged := make(map[string]V, next.n)
		for k, v := range next.All() {
			merged[k] = v
		}
		return Map[V]{base: merged, n: next.n}
	}
	return next
}
