package raftstate

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/freeport"

	"github.com/hashicorp/raft"
	"github.com/pgplane/pgplane/topology"
	"github.com/rs/zerolog"
)

func logEntry(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
}

// table is the members' Raft addresses, as the gossip would announce them,
// and which of them are up.
type table struct {
	mu    sync.Mutex
	addrs map[string]string
	down  map[string]bool
}

func (t *table) RaftAddress(name string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.addrs[name]
	return a, ok && !t.down[name]
}

func (t *table) Reachable() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.addrs) - len(t.down)
}

func (t *table) setDown(name string, down bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if down {
		t.down[name] = true
	} else {
		delete(t.down, name)
	}
}

// cluster is n stores on loopback over the real TLS transport. Their rule:
// at most two keys under slot/ (the shape of T11, a subnet's last
// addresses).
type cluster struct {
	t      *testing.T
	dir    string
	names  []string
	stores []*Store
	peers  []*table
	key    []byte
	timing Timing
	// applied, if set, is each member's applied hook.
	applied func(member int, keys []string)
	// listening, if set, is the next started member's hook for the
	// moment its transport accepts and its Raft is not set yet.
	listening func(member int)
}

// slotRule refuses a third slot, as T11 refuses a server past a subnet's
// last address.
func slotRule(values func() map[string]json.RawMessage) func(map[string]json.RawMessage) error {
	return func(changes map[string]json.RawMessage) error {
		all := values()
		for k, v := range changes {
			all[k] = v
		}
		n := 0
		for k, v := range all {
			if strings.HasPrefix(k, "slot/") && v != nil {
				n++
			}
		}
		if n > 2 {
			return topology.Violations{{Rule: "T11", Object: "subnet", Message: fmt.Sprintf("%d slots taken, 2 exist", n)}}
		}
		return nil
	}
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return newClusterWith(t, n, nil)
}

// newClusterWith is newCluster with an applied hook on every member.
func newClusterWith(t *testing.T, n int, applied func(member int, keys []string)) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), key: []byte("0123456789abcdef0123456789abcdef"), applied: applied,
		timing: Timing{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, Commit: 5 * time.Millisecond}}
	addrs := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		c.names = append(c.names, name)
		addrs[name] = freeAddr(t)
	}
	for range n {
		c.peers = append(c.peers, &table{addrs: addrs, down: map[string]bool{}})
		c.stores = append(c.stores, nil)
	}
	for i := range n {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, s := range c.stores {
			if s != nil {
				s.Stop()
			}
		}
	})
	return c
}

func freeAddr(t *testing.T) string {
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// start opens and starts member i.
func (c *cluster) start(i int) {
	c.t.Helper()
	var s *Store
	cfg := Config{
		Node: c.names[i], Members: c.names, Dir: filepath.Join(c.dir, c.names[i]), Bind: c.peers[i].addrs[c.names[i]],
		Key: c.key, Timing: c.timing, Logger: zerolog.Nop(),
		Check:   slotRule(func() map[string]json.RawMessage { return s.Values() }),
		Defined: func(key string) bool { return strings.HasPrefix(key, "file/") },
	}
	if c.applied != nil {
		cfg.Applied = func(keys []string) { c.applied(i, keys) }
	}
	s, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if hook := c.listening; hook != nil {
		s.listening = func() { hook(i) }
		c.listening = nil
	}
	if err := s.Start(c.peers[i]); err != nil {
		c.t.Fatal(err)
	}
	c.stores[i] = s
}

// stop stops member i; the others see it down.
func (c *cluster) stop(i int) {
	c.stores[i].Stop()
	c.stores[i] = nil
	for _, p := range c.peers {
		p.setDown(c.names[i], true)
	}
}

func (c *cluster) restart(i int) {
	for _, p := range c.peers {
		p.setDown(c.names[i], false)
	}
	c.start(i)
}

// leader returns the index of the leader, waiting for one.
func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.stores {
			if s != nil && s.Status().State == "Leader" {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return -1
}

// converged waits until every running member holds want.
func (c *cluster) converged(want map[string]json.RawMessage) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, s := range c.stores {
			if s != nil && !equalValues(s.Values(), want) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for i, s := range c.stores {
				if s != nil {
					c.t.Logf("%s: %s", c.names[i], s.Values())
				}
			}
			c.t.Fatalf("members did not converge on %s", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func equalValues(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

func value(s string) json.RawMessage { return json.RawMessage(s) }

// Two writes that each pass alone and break a rule together, made at the
// same instant on two members: exactly one is acknowledged, the other is
// refused with the rule, and every member holds the acknowledged one.
//
// SPEC: C5
func TestConcurrentWritesCheckedInLogOrder(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	if err := c.stores[lead].Change(map[string]json.RawMessage{"slot/a": value(`1`)}); err != nil {
		t.Fatal(err)
	}
	base := map[string]json.RawMessage{"slot/a": value(`1`)}
	for trial := range 10 {
		x, y := fmt.Sprintf("slot/x%d", trial), fmt.Sprintf("slot/y%d", trial)
		var (
			start = make(chan struct{})
			wg    sync.WaitGroup
			errs  [2]error
		)
		for j, key := range []string{x, y} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[j] = c.stores[j+1].Change(map[string]json.RawMessage{key: value(`2`)})
			}()
		}
		close(start)
		wg.Wait()
		var vs topology.Violations
		accepted := ""
		switch {
		case errs[0] == nil && errors.As(errs[1], &vs) && vs[0].Rule == "T11":
			accepted = x
		case errs[1] == nil && errors.As(errs[0], &vs) && vs[0].Rule == "T11":
			accepted = y
		default:
			t.Fatalf("trial %d: want one acknowledged and one refused with T11, got %v and %v", trial, errs[0], errs[1])
		}
		want := map[string]json.RawMessage{"slot/a": value(`1`), accepted: value(`2`)}
		c.converged(want)
		// The acknowledged write was applied on the member that took it
		// before it answered.
		if err := c.stores[lead].Change(map[string]json.RawMessage{accepted: nil}); err != nil {
			t.Fatal(err)
		}
		c.converged(base)
	}
}

// A write to a follower is handed to the leader and applied on the
// follower before it is acknowledged; a refused one changes nothing.
//
// SPEC: C5 A2
func TestFollowerWriteReadsItself(t *testing.T) {
	c := newCluster(t, 3)
	follower := (c.leader() + 1) % 3
	s := c.stores[follower]
	for i := range 20 {
		key := fmt.Sprintf("rule/%d", i)
		if err := s.Change(map[string]json.RawMessage{key: value(`true`)}); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Values()[key]; !ok {
			t.Fatalf("%s acknowledged on %s but not applied there", key, c.names[follower])
		}
	}
	before := s.Values()
	err := s.Change(map[string]json.RawMessage{"slot/1": value(`1`), "slot/2": value(`1`), "slot/3": value(`1`)})
	var vs topology.Violations
	if !errors.As(err, &vs) || !strings.Contains(err.Error(), "3 slots taken") {
		t.Fatalf("the rule's refusal must come back through the forwarding: %v", err)
	}
	if !equalValues(s.Values(), before) {
		t.Fatal("a refused change changed the state")
	}
}

// A write forwarded to a member that is starting (its transport accepts,
// its Raft is not set yet) is answered "not the leader" once its Raft is
// up, and the member keeps running: CI's soak once crashed a node there.
//
// SPEC: C5 A1
func TestForwardDuringStartIsAnswered(t *testing.T) {
	c := newCluster(t, 3)
	starting := (c.leader() + 1) % 3
	sender := (starting + 1) % 3
	c.stop(starting)
	type result struct {
		index uint64
		err   error
	}
	got := make(chan result, 1)
	c.listening = func(member int) {
		addr := c.peers[member].addrs[c.names[member]]
		go func() {
			index, err := c.stores[sender].forwardTo(addr, forwardRequest{Origin: c.names[sender], Changes: map[string]json.RawMessage{"rule/start": value(`true`)}})
			got <- result{index, err}
		}()
		// Let the write arrive and wait in the window.
		time.Sleep(300 * time.Millisecond)
	}
	c.restart(starting)
	select {
	case r := <-got:
		if !errors.Is(r.err, errNotLeader) {
			t.Fatalf("a write forwarded to a starting follower: index %d, error %v; want %q", r.index, r.err, errNotLeader)
		}
	case <-time.After(forwardTimeout):
		t.Fatal("a write forwarded to a starting member was not answered")
	}
	if err := c.stores[starting].Change(map[string]json.RawMessage{"rule/after": value(`true`)}); err != nil {
		t.Fatalf("the member that took a write while starting: %v", err)
	}
	c.converged(map[string]json.RawMessage{"rule/after": value(`true`)})
}

// A write through a follower returns only once the follower has served it:
// its applied hook (the appliance's snapshot swap) has returned, not only
// its state machine's values changed.
//
// SPEC: C5 A1
func TestFollowerWriteReturnsOnceServed(t *testing.T) {
	var (
		mu     sync.Mutex
		served = map[int]map[string]bool{}
	)
	c := newClusterWith(t, 3, func(member int, keys []string) {
		time.Sleep(5 * time.Millisecond) // a snapshot swap takes time
		mu.Lock()
		defer mu.Unlock()
		if served[member] == nil {
			served[member] = map[string]bool{}
		}
		for _, k := range keys {
			served[member][k] = true
		}
	})
	follower := (c.leader() + 1) % 3
	for i := range 20 {
		key := fmt.Sprintf("rule/%d", i)
		if err := c.stores[follower].Change(map[string]json.RawMessage{key: value(`1`)}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		ok := served[follower][key]
		mu.Unlock()
		if !ok {
			t.Fatalf("write %d acknowledged by %s before it served it", i, c.names[follower])
		}
	}
}

// A member that cannot reach a majority refuses writes with the reason and
// keeps what it applied; once the others are back, writes go through and
// everyone converges. Deleting objects the file does not define forgets
// them, with their children; deleting one it defines is kept.
//
// SPEC: C5
func TestMinorityRefusesUntilHealed(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	if err := c.stores[lead].Change(map[string]json.RawMessage{"server/a": value(`1`), "server/a/rule/x": value(`1`), "file/b": value(`1`)}); err != nil {
		t.Fatal(err)
	}
	c.converged(map[string]json.RawMessage{"server/a": value(`1`), "server/a/rule/x": value(`1`), "file/b": value(`1`)})
	alone := (lead + 1) % 3
	for i := range c.stores {
		if i != alone {
			c.stop(i)
		}
	}
	err := c.stores[alone].Change(map[string]json.RawMessage{"rule/minority": value(`1`)})
	var nq *NoQuorumError
	if !errors.As(err, &nq) || !strings.Contains(err.Error(), "no quorum: 1 of 3 members reachable") {
		t.Fatalf("a minority member must refuse with the reason: %v", err)
	}
	if _, ok := c.stores[alone].Values()["server/a"]; !ok {
		t.Fatal("the minority member must keep what it applied")
	}
	for i := range c.stores {
		if i != alone {
			c.restart(i)
		}
	}
	if err := c.stores[alone].Change(map[string]json.RawMessage{"server/a": nil, "file/b": nil}); err != nil {
		t.Fatalf("with a majority back, writes go through: %v", err)
	}
	c.converged(map[string]json.RawMessage{"file/b": nil})
}

// A restart of every member keeps every acknowledged change: each serves
// its applied state at once, before a leader is elected.
//
// SPEC: C5
func TestRestartKeepsEveryChange(t *testing.T) {
	c := newCluster(t, 3)
	want := map[string]json.RawMessage{}
	for i := range 10 {
		key := fmt.Sprintf("rule/%d", i)
		if err := c.stores[i%3].Change(map[string]json.RawMessage{key: value(`1`)}); err != nil {
			t.Fatal(err)
		}
		want[key] = value(`1`)
	}
	// A deletion of an object the file defines stays a nil value, not the
	// JSON null it is written as.
	if err := c.stores[1].Change(map[string]json.RawMessage{"file/gone": nil}); err != nil {
		t.Fatal(err)
	}
	want["file/gone"] = nil
	c.converged(want)
	for i := range c.stores {
		c.stop(i)
	}
	for i := range c.stores {
		c.restart(i)
		if !equalValues(c.stores[i].Values(), want) {
			t.Fatalf("%s must serve its applied state at once: %s", c.names[i], c.stores[i].Values())
		}
	}
	if err := c.stores[0].Change(map[string]json.RawMessage{"rule/after": value(`1`)}); err != nil {
		t.Fatal(err)
	}
	want["rule/after"] = value(`1`)
	c.converged(want)
}

// A member away while the log was compacted catches up from a snapshot,
// and what was deleted meanwhile does not come back.
//
// SPEC: C5
func TestAwayMemberCatchesUpFromSnapshot(t *testing.T) {
	c := newCluster(t, 3)
	c.timing.SnapshotThreshold = 4
	for i := range c.stores {
		c.stop(i)
	}
	for i := range c.stores {
		c.restart(i)
	}
	lead := c.leader()
	if err := c.stores[lead].Change(map[string]json.RawMessage{"rule/old": value(`1`)}); err != nil {
		t.Fatal(err)
	}
	c.converged(map[string]json.RawMessage{"rule/old": value(`1`)})
	away := (lead + 1) % 3
	c.stop(away)
	lead = c.leader()
	want := map[string]json.RawMessage{}
	for i := range 30 {
		key := fmt.Sprintf("rule/%d", i)
		if err := c.stores[lead].Change(map[string]json.RawMessage{key: value(`1`)}); err != nil {
			t.Fatal(err)
		}
		want[key] = value(`1`)
	}
	if err := c.stores[lead].Change(map[string]json.RawMessage{"rule/old": nil}); err != nil {
		t.Fatal(err)
	}
	if err := c.stores[lead].raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	c.restart(away)
	c.converged(want)
}

// The transport completes a handshake only between holders of one key,
// in both directions.
//
// SPEC: C5 C1
func TestTransportNeedsTheKey(t *testing.T) {
	server, client, err := transportTLS([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	otherServer, otherClient, _ := transportTLS([]byte("fedcba9876543210"))
	_, sameKeyClient, _ := transportTLS([]byte("0123456789abcdef"))
	handshake := func(s, c *tls.Config) error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		errc := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			tc := tls.Server(conn, s)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			err = tc.Handshake()
			if err == nil {
				// TLS 1.3: the client's certificate is checked after the
				// client's handshake returns; a byte from it settles it.
				_, err = tc.Read(make([]byte, 1))
			}
			errc <- err
		}()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), c)
		if err == nil {
			conn.Write([]byte{1})
			conn.SetReadDeadline(time.Now().Add(time.Second))
			conn.Read(make([]byte, 1)) // the server's alert, if any
			conn.Close()
		}
		return errors.Join(err, <-errc)
	}
	if err := handshake(server, sameKeyClient); err != nil {
		t.Fatalf("two members with one key must connect: %v", err)
	}
	if err := handshake(server, client); err != nil {
		t.Fatalf("a member must connect to itself: %v", err)
	}
	if handshake(server, otherClient) == nil {
		t.Fatal("a client without the key must be refused")
	}
	if handshake(otherServer, client) == nil {
		t.Fatal("a server without the key must be refused by the client")
	}
}

// A node that finds the previous format's state.json imports it once, keeps
// keys Raft already holds, and renames the file.
//
// SPEC: C5
func TestImportPreviousState(t *testing.T) {
	dir := t.TempDir()
	prev := `{"synced_at":"2026-01-01T00:00:00Z","clock":{"wall":1,"node":"n1"},"entries":[
{"key":"rule/a","value":{"x":1},"version":{"wall":1,"node":"n1"}},
{"key":"file/b","version":{"wall":2,"node":"n1"}},
{"key":"server/gone","version":{"wall":3,"node":"n1"}}]}`
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(prev), 0o644)
	var applied atomic.Int32
	s, err := Open(Config{Node: "local", Members: []string{"local"}, Dir: dir, Logger: zerolog.Nop(),
		Defined: func(key string) bool { return strings.HasPrefix(key, "file/") },
		Applied: func([]string) { applied.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(nil); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "state.json.imported")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("state.json was not imported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := map[string]json.RawMessage{"rule/a": value(`{"x":1}`), "file/b": nil}
	if got := s.Values(); !equalValues(got, want) || applied.Load() == 0 {
		t.Fatalf("imported %s, want %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("state.json must be renamed")
	}
}

// Whatever a log entry holds, applying it neither panics nor breaks the
// state: a malformed entry is skipped on every member alike.
func FuzzApplyEntry(f *testing.F) {
	f.Add([]byte(`{"origin":"n1","changes":{"server/a":{"x":1}},"forget":["server/b"]}`))
	f.Add([]byte(`{"changes":{"":1}}`))
	f.Add([]byte(`{"changes":{"a":null},"forget":[""]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm, _ := openFSM("", "n1", func(error) {})
		fsm.Apply(logEntry(1, []byte(`{"changes":{"server/a":1,"server/a/x":2}}`)))
		fsm.Apply(logEntry(2, data))
		idx, _ := fsm.index()
		if idx != 2 {
			t.Fatalf("index %d after entry 2", idx)
		}
		for k := range fsm.Values() {
			if k == "" {
				t.Fatal("an empty key entered the state")
			}
		}
	})
}

// Whatever a leader answers, a forwarding member turns it into an outcome
// without panicking, and an outcome survives the round trip.
func FuzzForwardResponse(f *testing.F) {
	f.Add([]byte(`{"index":3}`))
	f.Add([]byte(`{"violations":[{"Rule":"T11","Message":"full"}]}`))
	f.Add([]byte(`{"no_quorum":{"reachable":1,"members":3}}`))
	f.Add([]byte(`{"problem":{"key":"k","message":"m"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r forwardResponse
		if json.Unmarshal(data, &r) != nil {
			return
		}
		index, err := r.outcome()
		again := encodeOutcome(index, err)
		i2, err2 := again.outcome()
		if i2 != index || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("round trip changed the outcome: %d %v → %d %v", index, err, i2, err2)
		}
	})
}

// A state directory removed under a running node takes no more changes:
// they would be acknowledged into files without a name and lost at the next
// start. The refusal says why; what was applied stays served.
//
// SPEC: C5
func TestRemovedStateDirectoryRefusesChanges(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Node: "local", Members: []string{"local"}, Dir: dir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(nil); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Change(map[string]json.RawMessage{"rule/a": value(`1`)}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "raft")); err != nil {
		t.Fatal(err)
	}
	err = s.Change(map[string]json.RawMessage{"rule/b": value(`1`)})
	var gone *StateDirError
	if !errors.As(err, &gone) || !gone.Unavailable() || !strings.Contains(err.Error(), "removed or replaced while the node ran") {
		t.Fatalf("a change after the state directory was removed must be refused with the reason: %v", err)
	}
	if got := s.Values(); !equalValues(got, map[string]json.RawMessage{"rule/a": value(`1`)}) {
		t.Fatalf("the applied state must stay as it was: %s", got)
	}
}
