package raftstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// command is one entry of the Raft log: a change the leader checked against
// the state every earlier entry made.
type command struct {
	// Origin is the node whose admin API took the change.
	Origin string `json:"origin"`
	// Changes set overlay keys to values; a nil value deletes an object the
	// topology file defines, and stays in the state so that the file's
	// object does not come back.
	Changes map[string]json.RawMessage `json:"changes,omitempty"`
	// Forget removes keys, with every key below them: objects deleted that
	// only run-time changes had made.
	Forget []string `json:"forget,omitempty"`
}

// decodeCommand reads a log entry's data.
func decodeCommand(data []byte) (command, error) {
	var c command
	if err := json.Unmarshal(data, &c); err != nil {
		return command{}, fmt.Errorf("raft log entry: %w", err)
	}
	if _, ok := c.Changes[""]; ok {
		return command{}, errors.New("raft log entry: empty key")
	}
	deletionsAsNil(c.Changes)
	return c, nil
}

// deletionsAsNil turns the JSON null of a decoded deletion back into nil.
func deletionsAsNil(changes map[string]json.RawMessage) {
	for k, v := range changes {
		if string(v) == "null" {
			changes[k] = nil
		}
	}
}

// keys returns every key the command touches, sorted.
func (c command) keys() []string {
	out := slices.Collect(maps.Keys(c.Changes))
	out = append(out, c.Forget...)
	slices.Sort(out)
	return slices.Compact(out)
}

// appliedState is the state machine's state as written to disk after each
// entry, so that a restarting node serves every change it had applied at
// once, before it hears from a leader.
type appliedState struct {
	// Index is the Raft index of the last entry applied.
	Index  uint64                     `json:"index"`
	Values map[string]json.RawMessage `json:"values"`
}

// appliedFile is the applied state's file in the Raft directory: wiping the
// directory (a new cluster) wipes it too.
const appliedFile = "applied.json"

// fsm is the Raft state machine: the run-time changes in force, keyed as
// topology.Overlay reads them. It skips entries and snapshots at or below
// the index it already holds: its own file may be ahead of the snapshot Raft
// restores at start.
type fsm struct {
	dir     string // "" keeps nothing on disk (tests)
	node    string
	applied func(keys []string)
	report  func(err error)

	mu    sync.Mutex
	state appliedState
	// served is the index of the last entry whose applied hook returned.
	served  uint64
	changed chan struct{} // closed and replaced at every entry served
}

// openFSM reads the applied state from dir, if any. A file that cannot be
// read is set aside: Raft's log and snapshots hold the same state.
func openFSM(dir, node string, report func(error)) (*fsm, error) {
	f := &fsm{dir: dir, node: node, report: report, state: appliedState{Values: map[string]json.RawMessage{}}, changed: make(chan struct{})}
	if dir == "" {
		return f, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, appliedFile))
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading applied state: %w", err)
	}
	var st appliedState
	if err := json.Unmarshal(b, &st); err != nil || st.Values == nil {
		report(fmt.Errorf("applied state %s unreadable (%v); replaying the Raft log instead", filepath.Join(dir, appliedFile), err))
		return f, nil
	}
	deletionsAsNil(st.Values)
	f.state, f.served = st, st.Index
	return f, nil
}

// Values returns a copy of the state in force.
func (f *fsm) Values() map[string]json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.state.Values)
}

// has reports whether key holds a value or a deletion.
func (f *fsm) has(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.state.Values[key]
	return ok
}

// index returns the index of the last entry applied and served (the
// applied hook has returned), and a channel closed when another is.
func (f *fsm) index() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served, f.changed
}

// Apply applies one committed entry.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	if l.Index <= f.state.Index {
		f.mu.Unlock()
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		// Every node skips it alike.
		f.state.Index = l.Index
		f.servedLocked(l.Index)
		f.mu.Unlock()
		f.report(fmt.Errorf("entry %d skipped: %w", l.Index, err))
		return err
	}
	for k, v := range c.Changes {
		f.state.Values[k] = v
	}
	for _, k := range c.Forget {
		delete(f.state.Values, k)
		for key := range f.state.Values {
			if strings.HasPrefix(key, k+"/") {
				delete(f.state.Values, key)
			}
		}
	}
	f.state.Index = l.Index
	f.persistLocked()
	origin := "peer"
	if c.Origin == f.node {
		origin = "local"
	}
	changesTotal.WithLabelValues(origin).Inc()
	entries.Set(float64(len(f.state.Values)))
	f.mu.Unlock()
	f.serve(l.Index, c.keys())
	return nil
}

// serve hands the keys an entry (or a snapshot: nil) changed to the applied
// hook, then records the entry as served.
func (f *fsm) serve(index uint64, keys []string) {
	if f.applied != nil {
		f.applied(keys)
	}
	f.mu.Lock()
	f.servedLocked(index)
	f.mu.Unlock()
}

// servedLocked records that the entries up to index are served and wakes
// the waiters: a write is answered only once what it changed is served.
func (f *fsm) servedLocked(index uint64) {
	f.served = index
	appliedIndex.Set(float64(index))
	close(f.changed)
	f.changed = make(chan struct{})
}

// persistLocked writes the applied state with a temporary file and a
// rename. It is not synced: Raft's log is the durable record, and a lost or
// torn file is replayed from it.
func (f *fsm) persistLocked() {
	if f.dir == "" {
		return
	}
	b, err := json.Marshal(f.state)
	if err == nil {
		err = writeFileRenamed(f.dir, appliedFile, b)
	}
	if err != nil {
		f.report(fmt.Errorf("writing applied state: %w", err))
	}
}

// Snapshot captures the state for Raft's snapshot store, with the index of
// the last entry it holds.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.state)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return snapshot(b), nil
}

// Restore replaces the state with a snapshot's, unless the state already
// holds the snapshot's last entry: Raft restores its latest snapshot at
// start, and the applied state read from disk may be newer.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st appliedState
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	if st.Values == nil {
		st.Values = map[string]json.RawMessage{}
	}
	deletionsAsNil(st.Values)
	f.mu.Lock()
	if st.Index <= f.state.Index {
		f.mu.Unlock()
		return nil
	}
	f.state.Values = st.Values
	f.state.Index = st.Index
	f.persistLocked()
	entries.Set(float64(len(st.Values)))
	f.mu.Unlock()
	f.serve(st.Index, nil)
	return nil
}

// snapshot is a captured state.
type snapshot []byte

// Persist writes the snapshot.
func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the snapshot is a copy.
func (s snapshot) Release() {}

// writeFileRenamed writes dir/name through a temporary file and a rename,
// so that a reader finds the old content or the new, never a torn one.
func writeFileRenamed(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
