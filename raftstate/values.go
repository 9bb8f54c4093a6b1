package raftstate

import (
	"encoding/json"
	"maps"
)

// valueSet is the state machine's run-time changes: overlay keys and their
// values (nil: a deletion of an object the topology file defines). Keys are
// paths ("server/a/firewallRule/r"); every key is also indexed under each of
// its ancestors, so that forgetting an object and reading one object's keys
// cost what they touch, not the whole state.
type valueSet struct {
	values map[string]json.RawMessage
	// below maps a key's ancestors (each prefix before a '/') to the keys
	// under them.
	below map[string]map[string]struct{}
}

// newValueSet indexes values (taken, not copied).
func newValueSet(values map[string]json.RawMessage) *valueSet {
	s := &valueSet{values: values, below: map[string]map[string]struct{}{}}
	if s.values == nil {
		s.values = map[string]json.RawMessage{}
	}
	for k := range s.values {
		s.index(k)
	}
	return s
}

// ancestors calls fn with every proper prefix of key that ends before a '/'.
func ancestors(key string, fn func(string)) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			fn(key[:i])
		}
	}
}

func (s *valueSet) index(key string) {
	ancestors(key, func(a string) {
		set := s.below[a]
		if set == nil {
			set = map[string]struct{}{}
			s.below[a] = set
		}
		set[key] = struct{}{}
	})
}

// set sets key to v.
func (s *valueSet) set(key string, v json.RawMessage) {
	if _, ok := s.values[key]; !ok {
		s.index(key)
	}
	s.values[key] = v
}

// remove deletes key alone.
func (s *valueSet) remove(key string) {
	if _, ok := s.values[key]; !ok {
		return
	}
	delete(s.values, key)
	ancestors(key, func(a string) {
		if set := s.below[a]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(s.below, a)
			}
		}
	})
}

// forget deletes key and every key below it.
func (s *valueSet) forget(key string) {
	for k := range maps.Clone(s.below[key]) {
		s.remove(k)
	}
	s.remove(key)
}

// get returns key's value and whether the state holds it.
func (s *valueSet) get(key string) (json.RawMessage, bool) {
	v, ok := s.values[key]
	return v, ok
}

// under returns a copy of key's value and the values below it.
func (s *valueSet) under(key string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(s.below[key])+1)
	if v, ok := s.values[key]; ok {
		out[key] = v
	}
	for k := range s.below[key] {
		out[k] = s.values[k]
	}
	return out
}
