package pgplane

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/topology"
)

// overlay lays the run-time changes over the file's topology and validates
// the result. Without changes the file's topology, already valid, is the
// result.
func (f *topologyFile) overlay(file *topology.Topology, values map[string]json.RawMessage) (*topology.Topology, error) {
	if len(values) == 0 {
		return file, nil
	}
	next, problems := topology.Overlay(file, values)
	for _, p := range problems {
		log.Errorf("%v; skipped", p)
	}
	if vs, _ := topology.Validate(next); len(vs) > 0 {
		return nil, vs
	}
	return next, nil
}

// values returns the run-time changes; none without a store.
func (f *topologyFile) values() map[string]json.RawMessage {
	if f.store == nil {
		return nil
	}
	return f.store.Values()
}

// swapLocked publishes a snapshot of next with the given run-time state.
func (f *topologyFile) swapLocked(next *topology.Topology, state topology.State) error {
	serial := uint32(time.Now().Unix())
	if f.current != nil && serial <= f.current.Serial {
		serial = f.current.Serial + 1
	}
	snap, err := topology.NewSnapshot(next, state, serial)
	if err != nil {
		return err
	}
	f.current = snap
	f.publish(snap)
	// What is served is the file with every run-time change laid over it:
	// no conflict stands.
	f.setConflictLocked(nil)
	return nil
}

// setConflictLocked records why the run-time changes are not served (nil:
// they are), for pgplanectl health and coredns_pgplane_state_conflict.
func (f *topologyFile) setConflictLocked(err error) {
	f.conflict = err
	if err != nil {
		stateConflict.Set(1)
	} else {
		stateConflict.Set(0)
	}
}

// change checks a run-time change against every rule (A2), writes it to disk
// and serves it; it returns the entries to spread to the other nodes. A
// refused change changes nothing; the error is topology.Violations when a
// rule refuses it.
func (f *topologyFile) change(changes map[string]json.RawMessage) ([]cluster.Entry, error) {
	if f.store == nil {
		return nil, cluster.ErrNoStateDir
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	values := f.store.Values()
	maps.Copy(values, changes)
	next, problems := topology.Overlay(f.base, values)
	for _, p := range problems {
		if _, ours := changes[p.Key]; ours {
			return nil, p
		}
	}
	// The rules that bind a change come first: they say why a change that
	// also breaks a state rule (a subnet's new CIDR leaving its server
	// outside) is refused.
	vs := topology.CheckTransition(f.current.Topology, next)
	if state, _ := topology.Validate(next); len(state) > 0 || len(vs) > 0 {
		return nil, append(vs, state...)
	}
	entries, err := f.store.Commit(changes)
	if err != nil {
		return nil, err
	}
	if err := f.swapLocked(next, f.current.State); err != nil {
		// Valid topologies always make a snapshot; this is a bug, not a refusal.
		return entries, fmt.Errorf("change written but not served: %w", err)
	}
	return entries, nil
}

// storeChanged serves the state after a peer's changes arrived. Every change
// was checked on the node that made it; should two concurrent changes break
// a rule together, every node refuses the combination alike and keeps
// serving what it had until a later change mends it.
func (f *topologyFile) storeChanged() {
	f.mu.Lock()
	defer f.mu.Unlock()
	next, err := f.overlay(f.base, f.values())
	if err == nil {
		err = f.swapLocked(next, f.current.State)
	}
	if err != nil {
		f.setConflictLocked(err)
		log.Errorf("run-time changes from a peer refused, still serving serial %d:\n%v", f.current.Serial, err)
	}
}

// conflictErr returns why the replicated changes are not served, or nil.
func (f *topologyFile) conflictErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conflict
}

// collect forgets old tombstones, except the deletions of objects the file
// defines.
func (f *topologyFile) collect() {
	f.mu.Lock()
	keep := topology.Keys(f.base)
	f.mu.Unlock()
	if err := f.store.Collect(func(k string) bool { return keep[k] }); err != nil {
		log.Errorf("state: %v", err)
	}
}
