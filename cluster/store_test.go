package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeClock is a settable clock: staleness is a matter of days, which a
// test cannot wait for.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func openAt(t *testing.T, node, dir string, clock *fakeClock) *Store {
	t.Helper()
	s, err := OpenStore(StoreConfig{Node: node, Dir: dir, Now: clock.now, TombstoneTTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func value(s *Store, key string) string { return string(s.Values()[key]) }

// SPEC: C5
func TestStoreCommitIsOnDiskAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	s := openAt(t, "n1", dir, clock)
	if _, err := s.Commit(map[string]json.RawMessage{"server/a": json.RawMessage(`{"x":1}`), "server/b": nil}); err != nil {
		t.Fatal(err)
	}
	again := openAt(t, "n1", dir, clock)
	if value(again, "server/a") != `{"x":1}` {
		t.Fatalf("reopened state lost server/a: %v", again.Values())
	}
	if v, ok := again.Values()["server/b"]; !ok || v != nil {
		t.Fatal("the tombstone must survive a reopen")
	}
	// The clock continues past what was written: a new change is newer.
	e, _ := again.Commit(map[string]json.RawMessage{"server/a": json.RawMessage(`{"x":2}`)})
	if !s.Entries()[0].Version.Less(e[0].Version) {
		t.Fatal("a version after a reopen must be newer than the ones before")
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "state.json.*")); len(matches) != 0 {
		t.Fatalf("temporary files left behind: %v", matches)
	}
}

// SPEC: C5
func TestStoreWithoutDirectoryRefusesCommit(t *testing.T) {
	s, _ := OpenStore(StoreConfig{Node: "n1"})
	if _, err := s.Commit(map[string]json.RawMessage{"server/a": json.RawMessage(`{}`)}); err != ErrNoStateDir {
		t.Fatalf("want ErrNoStateDir, got %v", err)
	}
	if len(s.Values()) != 0 {
		t.Fatal("a refused commit must change nothing")
	}
}

// SPEC: C5
func TestStoreFailedWriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	s := openAt(t, "n1", dir, clock)
	s.Commit(map[string]json.RawMessage{"server/a": json.RawMessage(`1`)})
	// The state directory is replaced by a file: no write can succeed,
	// even as root.
	os.RemoveAll(dir)
	os.WriteFile(dir, nil, 0o600)
	if _, err := s.Commit(map[string]json.RawMessage{"server/a": json.RawMessage(`2`), "server/c": json.RawMessage(`3`)}); err == nil {
		t.Fatal("a write to a read-only directory must fail")
	}
	if value(s, "server/a") != "1" || len(s.Values()) != 1 {
		t.Fatalf("a failed commit must leave the state as it was: %v", s.Values())
	}
}

// SPEC: C5
func TestStoreNewestVersionWinsOnEveryNode(t *testing.T) {
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	a, b := openAt(t, "a", t.TempDir(), clock), openAt(t, "b", t.TempDir(), clock)
	ea, _ := a.Commit(map[string]json.RawMessage{"k": json.RawMessage(`"a"`)})
	eb, _ := b.Commit(map[string]json.RawMessage{"k": json.RawMessage(`"b"`)}) // same wall time: node name breaks the tie
	a.Merge(eb)
	b.Merge(ea)
	if value(a, "k") != value(b, "k") || value(a, "k") != `"b"` {
		t.Fatalf("nodes disagree: a=%s b=%s", value(a, "k"), value(b, "k"))
	}
	clock.t = clock.t.Add(time.Second)
	del, _ := a.Commit(map[string]json.RawMessage{"k": nil})
	if changed, _ := b.Merge(eb); changed {
		t.Fatal("an old entry must not replace a newer one")
	}
	b.Merge(del)
	if changed, _ := b.Merge(eb); changed || b.Values()["k"] != nil {
		t.Fatal("a deletion must not be undone by an older write arriving late")
	}
}

// SPEC: C5
func TestStoreCollectKeepsWhatTheFileDefines(t *testing.T) {
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	s := openAt(t, "n1", t.TempDir(), clock)
	s.Commit(map[string]json.RawMessage{"server/file": nil, "server/api": nil, "server/live": json.RawMessage(`{}`)})
	clock.t = clock.t.Add(23 * time.Hour)
	s.Collect(nil)
	if len(s.Values()) != 3 {
		t.Fatal("tombstones younger than the TTL must stay")
	}
	clock.t = clock.t.Add(2 * time.Hour)
	s.Collect(func(k string) bool { return k == "server/file" })
	v := s.Values()
	if _, ok := v["server/api"]; ok {
		t.Fatal("an old tombstone must be forgotten")
	}
	if _, ok := v["server/file"]; !ok {
		t.Fatal("the deletion of a file's object must be kept, or the object comes back")
	}
	if _, ok := v["server/live"]; !ok {
		t.Fatal("live entries are never collected")
	}
}

// A node away for longer than the tombstone TTL holds entries whose
// deletions its peers have forgotten: it must not bring them back, and it
// must give them up itself (C5).
//
// SPEC: C5
func TestStoreNodeAwayLongerThanTTLResyncs(t *testing.T) {
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	live, third, away := openAt(t, "live", t.TempDir(), clock), openAt(t, "third", t.TempDir(), clock), openAt(t, "away", t.TempDir(), clock)
	live.Commit(map[string]json.RawMessage{"server/old": json.RawMessage(`{}`), "server/kept": json.RawMessage(`{}`)})
	exchange := func(a, b *Store) {
		a.MergeFull(b.Full())
		b.MergeFull(a.Full())
	}
	exchange(live, third)
	exchange(live, away)

	// "away" leaves. "old" is deleted; live and third stay in touch for two
	// days, and the tombstone is collected.
	clock.t = clock.t.Add(time.Hour)
	live.Commit(map[string]json.RawMessage{"server/old": nil})
	for h := 0; h < 48; h++ {
		clock.t = clock.t.Add(time.Hour)
		exchange(live, third)
	}
	live.Collect(nil)
	third.Collect(nil)
	if _, ok := live.Values()["server/old"]; ok {
		t.Fatal("the tombstone must have been collected")
	}
	// While away, "away" took a write of its own.
	away.Commit(map[string]json.RawMessage{"server/new": json.RawMessage(`{}`)})

	// They meet. live must not take "old" back; away must drop it and
	// keep its own new write; both end alike.
	live.MergeFull(away.Full())
	if _, ok := live.Values()["server/old"]; ok {
		t.Fatal("a stale node brought back a deleted object")
	}
	if _, ok := live.Values()["server/new"]; !ok {
		t.Fatal("a write made while away must be taken")
	}
	away.MergeFull(live.Full())
	if _, ok := away.Values()["server/old"]; ok {
		t.Fatal("the stale node must give up what its peers deleted")
	}
	for _, k := range []string{"server/kept", "server/new"} {
		if _, ok := away.Values()[k]; !ok {
			t.Fatalf("the stale node lost %s", k)
		}
	}
}

// MergeFull and Merge read what peers send: no input may panic them.
func FuzzStoreMergeFull(f *testing.F) {
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	peer, _ := OpenStore(StoreConfig{Node: "peer", Now: clock.now})
	f.Add([]byte(`{"synced_at":"2026-01-01T00:00:00Z","stale":true,"entries":[{"key":"k","value":{},"version":{"Wall":1}}]}`))
	f.Add(peer.Full())
	f.Add([]byte(`{"entries":[{"key":"","value":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := OpenStore(StoreConfig{Node: "n1", Now: clock.now})
		s.MergeFull(b)
		var entries []Entry
		if json.Unmarshal(b, &entries) == nil {
			s.Merge(entries)
		}
	})
}
