package raftstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
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

// appliedState is the state machine's state as written to disk, so that a
// restarting node serves every change it had applied at once, before it
// hears from a leader; and as Raft's snapshots hold it.
type appliedState struct {
	// Index is the Raft index of the last entry applied.
	Index  uint64                     `json:"index"`
	Values map[string]json.RawMessage `json:"values"`
}

// journalEntry is one applied entry as the journal holds it: the command
// and its index.
type journalEntry struct {
	Index uint64 `json:"index"`
	command
}

// The applied state's files, in the Raft directory (wiping the directory,
// a new cluster, wipes them too): the whole state at some index, and the
// journal of the entries applied after it, one JSON line each. An entry
// appends a line, at the cost of what it changed; once the journal has
// grown past the whole state's size (and compactAt), the whole state is
// written again and the journal emptied, so a change costs what it touches
// plus an amortised constant.
const (
	appliedFile = "applied.json"
	journalFile = "applied.journal"
	compactAt   = 64 << 10
)

// fsm is the Raft state machine: the run-time changes in force, keyed as
// topology.Overlay reads them. It skips entries and snapshots at or below
// the index it already holds: its own files may be ahead of the snapshot
// Raft restores at start.
type fsm struct {
	dir     string // "" keeps nothing on disk (tests)
	node    string
	applied func(keys []string)
	report  func(err error)

	mu     sync.Mutex
	values *valueSet
	// at is the Raft index of the last entry applied.
	at uint64
	// served is the index of the last entry whose applied hook returned.
	served  uint64
	changed chan struct{} // closed and replaced at every entry served

	journal *os.File // appliedFile's journal, open for appending; nil: write the whole state next
	// journalSize is the journal's length; wholeSize the whole state's
	// length when last written.
	journalSize, wholeSize int64
}

// openFSM reads the applied state from dir, if any: the whole state, then
// the journal's entries after it. A file that cannot be read is set aside,
// and a journal is read up to its first torn or unreadable line: Raft's log
// and snapshots hold the same state.
func openFSM(dir, node string, report func(error)) (*fsm, error) {
	f := &fsm{dir: dir, node: node, report: report, values: newValueSet(nil), changed: make(chan struct{})}
	if dir == "" {
		return f, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, appliedFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A journal continues a whole state: without one it would lay
		// later entries over nothing, and Raft would not replay the
		// earlier ones (the state's index would be past them).
		os.Remove(filepath.Join(dir, journalFile))
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("reading applied state: %w", err)
	default:
		var st appliedState
		if err := json.Unmarshal(b, &st); err != nil || st.Values == nil {
			report(fmt.Errorf("applied state %s unreadable (%v); replaying the Raft log instead", filepath.Join(dir, appliedFile), err))
			// Its journal continues a state this node no longer has.
			os.Remove(filepath.Join(dir, journalFile))
			return f, nil
		}
		deletionsAsNil(st.Values)
		f.values, f.at, f.wholeSize = newValueSet(st.Values), st.Index, int64(len(b))
	}
	if err := f.replayJournal(); err != nil {
		return nil, err
	}
	f.served = f.at
	return f, nil
}

// replayJournal applies the journal's entries after the whole state's
// index, in order, and stops at the first line that cannot be read (a torn
// last write). The next entry writes the whole state (f.journal is nil).
func (f *fsm) replayJournal() error {
	b, err := os.ReadFile(filepath.Join(f.dir, journalFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading applied state's journal: %w", err)
	}
	for line := range bytes.Lines(b) {
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil || e.Index == 0 {
			f.report(fmt.Errorf("applied state's journal %s: unreadable line after index %d; the Raft log holds the rest", filepath.Join(f.dir, journalFile), f.at))
			break
		}
		if e.Index <= f.at {
			continue
		}
		deletionsAsNil(e.Changes)
		f.applyLocked(e.command)
		f.at = e.Index
	}
	return nil
}

// Values returns a copy of the state in force.
func (f *fsm) Values() map[string]json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.values.values)
}

// value returns key's value and whether the state holds it (a value or a
// deletion).
func (f *fsm) value(key string) (json.RawMessage, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.values.get(key)
}

// under returns key's value and every value below it.
func (f *fsm) under(key string) map[string]json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.values.under(key)
}

// has reports whether key holds a value or a deletion.
func (f *fsm) has(key string) bool {
	_, ok := f.value(key)
	return ok
}

// size returns the number of keys in force.
func (f *fsm) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.values.values)
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
	if l.Index <= f.at {
		f.mu.Unlock()
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		// Every node skips it alike.
		f.at = l.Index
		f.servedLocked(l.Index)
		f.mu.Unlock()
		f.report(fmt.Errorf("entry %d skipped: %w", l.Index, err))
		return err
	}
	f.applyLocked(c)
	f.at = l.Index
	f.persistLocked(journalEntry{Index: l.Index, command: c})
	origin := "peer"
	if c.Origin == f.node {
		origin = "local"
	}
	changesTotal.WithLabelValues(origin).Inc()
	entries.Set(float64(len(f.values.values)))
	f.mu.Unlock()
	f.serve(l.Index, c.keys())
	return nil
}

// applyLocked lays a command over the state.
func (f *fsm) applyLocked(c command) {
	for k, v := range c.Changes {
		f.values.set(k, v)
	}
	for _, k := range c.Forget {
		f.values.forget(k)
	}
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

// persistLocked records an applied entry on disk: a line appended to the
// journal, or the whole state when the journal has grown past it (or
// cannot be written). Nothing is synced: Raft's log is the durable record,
// and a lost or torn file is replayed from it.
func (f *fsm) persistLocked(e journalEntry) {
	if f.dir == "" {
		return
	}
	if f.journal != nil && f.journalSize < max(compactAt, f.wholeSize) {
		line, err := json.Marshal(e)
		if err == nil {
			line = append(line, '\n')
			_, err = f.journal.Write(line)
		}
		if err == nil {
			f.journalSize += int64(len(line))
			return
		}
		f.report(fmt.Errorf("appending to the applied state's journal: %w; writing the whole state instead", err))
	}
	f.writeWholeLocked()
}

// writeWholeLocked writes the whole state (a temporary file and a rename)
// and empties the journal.
func (f *fsm) writeWholeLocked() {
	b, err := json.Marshal(appliedState{Index: f.at, Values: f.values.values})
	if err == nil {
		err = writeFileRenamed(f.dir, appliedFile, b)
	}
	if err != nil {
		f.report(fmt.Errorf("writing applied state: %w", err))
		return
	}
	f.wholeSize = int64(len(b))
	if f.journal == nil {
		f.journal, err = os.OpenFile(filepath.Join(f.dir, journalFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			f.report(fmt.Errorf("opening the applied state's journal: %w", err))
			f.journal = nil
			return
		}
	}
	if err := f.journal.Truncate(0); err != nil {
		f.report(fmt.Errorf("emptying the applied state's journal: %w", err))
		f.journal.Close()
		f.journal = nil
		return
	}
	f.journalSize = 0
}

// close closes the journal.
func (f *fsm) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.journal != nil {
		f.journal.Close()
		f.journal = nil
	}
}

// Snapshot captures the state for Raft's snapshot store, with the index of
// the last entry it holds.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(appliedState{Index: f.at, Values: f.values.values})
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
	deletionsAsNil(st.Values)
	f.mu.Lock()
	if st.Index <= f.at {
		f.mu.Unlock()
		return nil
	}
	f.values, f.at = newValueSet(st.Values), st.Index
	if f.dir != "" {
		f.writeWholeLocked()
	}
	entries.Set(float64(len(f.values.values)))
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
