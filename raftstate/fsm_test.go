package raftstate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// applyAll applies entries 1..n of changes to f, as Raft would.
func applyAll(t *testing.T, f *fsm, from uint64, cmds ...string) uint64 {
	t.Helper()
	for _, c := range cmds {
		from++
		if err := f.Apply(logEntry(from, []byte(c))); err != nil {
			t.Fatalf("entry %d: %v", from, err)
		}
	}
	return from
}

func openTestFSM(t *testing.T, dir string) *fsm {
	t.Helper()
	f, err := openFSM(dir, "n1", func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	return f
}

// An entry appends a line to the journal rather than writing the whole
// state; a restart reads the whole state and then the journal; the journal
// is folded into the whole state once it outgrows it, so it stays bounded.
//
// SPEC: C5
func TestAppliedStateJournal(t *testing.T) {
	dir := t.TempDir()
	f := openTestFSM(t, dir)
	big := strings.Repeat("x", 200)
	var cmds []string
	want := map[string]json.RawMessage{}
	for i := range 2000 {
		key := fmt.Sprintf("server/s%d", i)
		cmds = append(cmds, fmt.Sprintf(`{"changes":{%q:{"pad":%q}}}`, key, big))
		want[key] = json.RawMessage(fmt.Sprintf(`{"pad":%q}`, big))
	}
	// Rules below s1, then s1 forgotten with them; a deletion kept.
	cmds = append(cmds, `{"changes":{"server/s1/firewallRule/a":1,"server/s1/firewallRule/b":2}}`,
		`{"forget":["server/s1"]}`, `{"changes":{"server/file":null}}`)
	delete(want, "server/s1")
	want["server/file"] = nil
	var whole, journal int64
	last := uint64(0)
	for _, c := range cmds {
		last = applyAll(t, f, last, c)
		w, _ := os.Stat(filepath.Join(dir, appliedFile))
		j, _ := os.Stat(filepath.Join(dir, journalFile))
		if j != nil && j.Size() > max(compactAt, w.Size())+4096 {
			t.Fatalf("journal %d bytes beside a whole state of %d: never folded", j.Size(), w.Size())
		}
		whole, journal = w.Size(), max(journal, j.Size())
	}
	if journal == 0 || whole < compactAt {
		t.Fatalf("test too small to fold the journal: whole %d, journal %d", whole, journal)
	}
	if got := f.Values(); !equalValues(got, want) {
		t.Fatalf("state holds %d keys, want %d", len(got), len(want))
	}
	f.close()
	again := openTestFSM(t, dir)
	if got, _ := again.index(); got != last || !equalValues(again.Values(), want) {
		t.Fatalf("restart: index %d (want %d), %d keys (want %d)", got, last, len(again.Values()), len(want))
	}
	// It goes on from there.
	applyAll(t, again, last, `{"changes":{"server/after":1}}`)
	again.close()
	third := openTestFSM(t, dir)
	if _, ok := third.value("server/after"); !ok {
		t.Fatal("the entry after a restart is lost at the next")
	}
}

// A torn last line (a crash mid-append) is ignored: the state is that of
// the entries before it, and Raft's log holds the rest. An unreadable or missing
// whole state drops its journal too: the journal continues it.
//
// SPEC: C5
func TestAppliedStateTornJournal(t *testing.T) {
	dir := t.TempDir()
	f := openTestFSM(t, dir)
	last := applyAll(t, f, 0, `{"changes":{"server/a":1}}`, `{"changes":{"server/b":2}}`, `{"changes":{"server/c":3}}`)
	f.close()
	j := filepath.Join(dir, journalFile)
	b, err := os.ReadFile(j)
	if err != nil || len(b) == 0 {
		t.Fatalf("no journal after three entries: %v", err)
	}
	if err := os.WriteFile(j, b[:len(b)-5], 0o600); err != nil {
		t.Fatal(err)
	}
	torn := openTestFSM(t, dir)
	at, _ := torn.index()
	if _, ok := torn.value("server/c"); ok || at != last-1 {
		t.Fatalf("after a torn last line: index %d, want %d, without server/c", at, last-1)
	}
	if _, ok := torn.value("server/b"); !ok {
		t.Fatal("the entries before the torn line must be in force")
	}
	// Raft replays the torn entry; it is applied once.
	applyAll(t, torn, last-1, `{"changes":{"server/c":3}}`)
	if _, ok := torn.value("server/c"); !ok {
		t.Fatal("the replayed entry is not in force")
	}
	torn.close()
	if err := os.WriteFile(filepath.Join(dir, appliedFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := openTestFSM(t, dir)
	if n := len(empty.Values()); n != 0 {
		t.Fatalf("an unreadable whole state must not be continued by its journal: %d keys", n)
	}
	empty.close()
	// Nor a missing one: a journal alone would put the state's index past
	// entries it does not hold.
	f = openTestFSM(t, dir)
	last = applyAll(t, f, 0, `{"changes":{"server/a":1}}`, `{"changes":{"server/b":2}}`)
	f.close()
	if err := os.Remove(filepath.Join(dir, appliedFile)); err != nil {
		t.Fatal(err)
	}
	alone := openTestFSM(t, dir)
	if at, _ := alone.index(); at != 0 || len(alone.Values()) != 0 {
		t.Fatalf("a journal without its whole state was replayed: index %d, %d keys (after %d entries)", at, len(alone.Values()), last)
	}
}

// The value set's index answers forget and under as a scan of every key
// would, whatever keys and operations come.
//
// SPEC: C5
func FuzzValueSetMatchesScan(f *testing.F) {
	f.Add([]byte("sa\x00sa/b\x00sa/b/c\x00fa\x00sab\x00s/x\x00f\x00"))
	f.Add([]byte("s\x00s/\x00s//\x00f/\x00"))
	f.Fuzz(func(t *testing.T, script []byte) {
		set := newValueSet(nil)
		plain := map[string]json.RawMessage{}
		for i, op := range strings.Split(string(script), "\x00") {
			if op == "" {
				continue
			}
			key := op[1:]
			switch op[0] % 3 {
			case 0:
				v := json.RawMessage(fmt.Sprint(i))
				set.set(key, v)
				plain[key] = v
			case 1:
				set.forget(key)
				for k := range plain {
					if k == key || strings.HasPrefix(k, key+"/") {
						delete(plain, k)
					}
				}
			case 2:
				got := set.under(key)
				n := 0
				for k, v := range plain {
					if k == key || strings.HasPrefix(k, key+"/") {
						n++
						if w, ok := got[k]; !ok || string(w) != string(v) {
							t.Fatalf("under(%q) misses %q", key, k)
						}
					}
				}
				if n != len(got) {
					t.Fatalf("under(%q) has %d keys, a scan %d", key, len(got), n)
				}
			}
		}
		if !equalValues(set.values, plain) {
			t.Fatalf("set %v, scan %v", set.values, plain)
		}
		if again := newValueSet(plain); len(again.below) != len(set.below) {
			t.Fatalf("index after operations has %d ancestors, built afresh %d", len(set.below), len(again.below))
		}
	})
}
