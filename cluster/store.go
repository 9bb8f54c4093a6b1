package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Entry is one versioned object of the replicated state: the admin API's
// change to one key of the topology overlay. A nil Value is a tombstone, a
// deletion kept so that a node that was away cannot bring the object back.
type Entry struct {
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value,omitempty"`
	Version Version         `json:"version"`
}

// Deleted reports whether the entry is a tombstone.
func (e Entry) Deleted() bool { return e.Value == nil }

// StoreConfig configures a Store.
type StoreConfig struct {
	// Node is this node's name, the tiebreak of its versions.
	Node string
	// Dir is the state directory; the state is written to Dir/state.json
	// before a change is acknowledged. Empty keeps the state in memory, and
	// Commit refuses.
	Dir string
	// TombstoneTTL is how long a deletion is remembered (default 24 h). A
	// node that has not synchronised with a peer for longer resynchronises
	// the whole state from the first peer that has (C5).
	TombstoneTTL time.Duration
	// Solo is set for a node without peers: it is never stale.
	Solo bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultTombstoneTTL is how long deletions are kept by default.
const DefaultTombstoneTTL = 24 * time.Hour

// ErrNoStateDir refuses a change on a node that cannot write it to disk.
var ErrNoStateDir = errors.New("no state directory (the state line of the pgplane block): a change must be written to disk before it is acknowledged (C5)")

// Store is a node's replicated state: versioned entries where the newest
// version of each key wins on every node alike, written to disk with a
// temporary file, fsync and rename before a change is acknowledged.
type Store struct {
	cfg StoreConfig

	mu       sync.Mutex
	clock    *Clock
	entries  map[string]Entry
	syncedAt time.Time // the last full exchange with a peer
	written  time.Time // the syncedAt last written to disk
}

// stateFile is the state as written to disk and exchanged in push/pull.
type stateFile struct {
	// SyncedAt is the last time the writer exchanged its whole state with a
	// peer; Stale says that was longer ago than the tombstone TTL.
	SyncedAt time.Time `json:"synced_at"`
	Stale    bool      `json:"stale,omitempty"`
	Clock    Version   `json:"clock"`
	Entries  []Entry   `json:"entries"`
}

const stateFileName = "state.json"

// OpenStore reads the state directory's state, if there is one.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = DefaultTombstoneTTL
	}
	s := &Store{cfg: cfg, clock: NewClock(cfg.Node, cfg.Now), entries: map[string]Entry{}}
	if cfg.Dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, stateFileName))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", filepath.Join(cfg.Dir, stateFileName), err)
	}
	s.syncedAt, s.written = st.SyncedAt, st.SyncedAt
	s.clock.Observe(st.Clock)
	for _, e := range st.Entries {
		s.entries[e.Key] = e
		s.clock.Observe(e.Version)
	}
	s.changedLocked("")
	return s, nil
}

// Dir returns the state directory, "" for none.
func (s *Store) Dir() string { return s.cfg.Dir }

// Values returns the newest value of every key, nil for a deleted one.
func (s *Store) Values() map[string]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]json.RawMessage, len(s.entries))
	for k, e := range s.entries {
		out[k] = e.Value
	}
	return out
}

// Counts returns how many live entries and tombstones the store holds.
func (s *Store) Counts() (live, tombstones int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countsLocked()
}

func (s *Store) countsLocked() (live, tombstones int) {
	for _, e := range s.entries {
		if e.Deleted() {
			tombstones++
		} else {
			live++
		}
	}
	return live, tombstones
}

// changedLocked records a change of the store in its metrics: one more
// change of the given origin ("local" or "peer"; "" for none, as when old
// tombstones are forgotten) and the new sizes.
func (s *Store) changedLocked(origin string) {
	if origin != "" {
		stateChanges.WithLabelValues(origin).Inc()
	}
	live, tombstones := s.countsLocked()
	stateEntries.WithLabelValues("live").Set(float64(live))
	stateEntries.WithLabelValues("tombstone").Set(float64(tombstones))
}

// Entries returns every entry, tombstones included, in key order.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked()
}

func (s *Store) sortedLocked() []Entry {
	out := make([]Entry, 0, len(s.entries))
	for _, k := range slices.Sorted(maps.Keys(s.entries)) {
		out = append(out, s.entries[k])
	}
	return out
}

// Commit versions a local change (key to value, nil deletes), writes it to
// disk and returns the entries to spread. Nothing changes when it fails.
func (s *Store) Commit(changes map[string]json.RawMessage) ([]Entry, error) {
	if s.cfg.Dir == "" {
		return nil, ErrNoStateDir
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	made := make([]Entry, 0, len(changes))
	old := make(map[string]Entry, len(changes))
	for _, k := range slices.Sorted(maps.Keys(changes)) {
		e := Entry{Key: k, Value: changes[k], Version: s.clock.Next()}
		if was, ok := s.entries[k]; ok {
			old[k] = was
		}
		s.entries[k] = e
		made = append(made, e)
	}
	if err := s.persistLocked(); err != nil {
		for _, e := range made {
			if was, ok := old[e.Key]; ok {
				s.entries[e.Key] = was
			} else {
				delete(s.entries, e.Key)
			}
		}
		return nil, err
	}
	s.changedLocked("local")
	return made, nil
}

// Merge takes entries from a peer: the newer version of each key wins. It
// reports whether anything changed; a change is on disk before it returns.
func (s *Store) Merge(entries []Entry) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mergeLocked(entries) {
		return false, nil
	}
	s.changedLocked("peer")
	return true, s.persistLocked()
}

func (s *Store) mergeLocked(entries []Entry) bool {
	changed := false
	for _, e := range entries {
		if e.Key == "" {
			continue
		}
		s.clock.Observe(e.Version)
		if was, ok := s.entries[e.Key]; ok && !was.Version.Less(e.Version) {
			continue
		}
		s.entries[e.Key] = e
		changed = true
	}
	return changed
}

// staleLocked reports whether this node has been out of touch for longer
// than the tombstone TTL: its peers may have forgotten deletions it has not
// seen, so its older entries can no longer be trusted.
func (s *Store) staleLocked(now time.Time) bool {
	return !s.cfg.Solo && now.Sub(s.syncedAt) > s.cfg.TombstoneTTL
}

// Full returns the whole state for a push/pull exchange.
func (s *Store) Full() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(stateFile{SyncedAt: s.syncedAt, Stale: s.staleLocked(s.cfg.Now()), Clock: s.clock.last, Entries: s.sortedLocked()})
	return b
}

// MergeFull takes a peer's whole state (push/pull anti-entropy) and reports
// whether anything changed.
//
// A peer that is stale and less recently synchronised than this node sends
// entries that may have been deleted long ago: only those written after its
// last synchronisation are taken. A stale node meeting a peer synchronised
// more recently resynchronises: it drops its own entries from before its
// last synchronisation that the peer does not have (their tombstones are
// gone), then merges.
func (s *Store) MergeFull(buf []byte) (bool, error) {
	var remote stateFile
	if err := json.Unmarshal(buf, &remote); err != nil {
		return false, fmt.Errorf("peer state: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	stale := s.staleLocked(now)
	changed := false
	entries := remote.Entries
	switch {
	case remote.Stale && remote.SyncedAt.Before(s.syncedAt):
		entries = slices.DeleteFunc(slices.Clone(entries), func(e Entry) bool { return e.Version.Wall <= remote.SyncedAt.UnixNano() })
	case stale:
		has := make(map[string]bool, len(remote.Entries))
		for _, e := range remote.Entries {
			has[e.Key] = true
		}
		for k, e := range s.entries {
			if !has[k] && e.Version.Wall <= s.syncedAt.UnixNano() {
				delete(s.entries, k)
				changed = true
			}
		}
	}
	if s.mergeLocked(entries) {
		changed = true
	}
	if remote.SyncedAt.After(s.syncedAt) || !remote.Stale || stale {
		s.syncedAt = now
	}
	if changed {
		s.changedLocked("peer")
	}
	if !changed && !stale && now.Sub(s.written) < s.cfg.TombstoneTTL/24 {
		return false, nil
	}
	return changed, s.persistLocked()
}

// Collect forgets tombstones older than the TTL, except those keep holds
// (a deletion of an object the topology file defines must outlive the TTL,
// or the file's object would come back).
func (s *Store) Collect(keep func(key string) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	horizon := s.cfg.Now().Add(-s.cfg.TombstoneTTL).UnixNano()
	changed := false
	for k, e := range s.entries {
		if e.Deleted() && e.Version.Wall < horizon && (keep == nil || !keep(k)) {
			delete(s.entries, k)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	s.changedLocked("")
	return s.persistLocked()
}

// persistLocked writes the state: a temporary file, fsync, rename, and an
// fsync of the directory, so that a crash leaves the old state or the new.
func (s *Store) persistLocked() error {
	if s.cfg.Dir == "" {
		return nil
	}
	b, err := json.Marshal(stateFile{SyncedAt: s.syncedAt, Clock: s.clock.last, Entries: s.sortedLocked()})
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	if err := writeFileAtomic(s.cfg.Dir, stateFileName, b); err != nil {
		return err
	}
	s.written = s.syncedAt
	return nil
}

// writeFileAtomic writes dir/name so that a crash leaves the old content or
// the new: a temporary file, fsync, rename, and an fsync of the directory.
func writeFileAtomic(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
