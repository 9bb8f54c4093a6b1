// Package raftstate keeps the admin API's run-time changes in a Raft log
// (hashicorp/raft) among the cluster's configured members (SPEC.md C5).
//
// A write goes to the leader, from any member: the leader checks it against
// the state every committed entry made, in log order, one write at a time,
// and appends it; the write is acknowledged once committed by a majority
// and applied on the member that took it. A member that cannot reach a
// majority refuses writes with NoQuorumError and keeps serving what it had
// applied. Every member applies the same entries in the same order, keeps
// the result on disk, and restarts serving it.
//
// Its files: store.go (a member's Raft node and writes), fsm.go (the state
// machine), transport.go (mutual TLS with an authority derived from the
// gossip key), forward.go (writes handed to the leader), upgrade.go (the
// one-time import of the previous format), log.go and metrics.go.
package raftstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"
	"github.com/rs/zerolog"
)

// Config configures a member's store.
type Config struct {
	// Node is this member's name, its Raft server ID.
	Node string
	// Members are every configured member's name (witnesses included):
	// Raft's voters.
	Members []string
	// Dir is the state directory; Raft's data is kept in Dir/raft.
	Dir string
	// Bind is the Raft transport's listen address (IP:port); empty for a
	// node without peers, whose log lives in an in-memory transport.
	Bind string
	// Advertise is the address other members dial, when not Bind.
	Advertise string
	// Key is the gossip key; the transport's authority is derived from it.
	// Empty only in dev mode.
	Key []byte
	// Check checks a change against every rule with the state applied so
	// far; it returns topology.Violations or topology.OverlayProblem when a
	// rule refuses the change.
	Check func(changes map[string]json.RawMessage) error
	// Defined reports whether the topology file defines the object at key:
	// its deletion is kept in the state; any other is forgotten.
	Defined func(key string) bool
	// Applied is called after entries were applied, with the keys they
	// touched, or nil when anything may have changed (a snapshot).
	Applied func(keys []string)
	// Timing tunes Raft; zero values take the defaults.
	Timing Timing
	Logger zerolog.Logger
}

// Timing are the Raft timeouts.
type Timing struct {
	// Heartbeat is how long a follower waits to hear from a leader before
	// it calls an election; Election is how long a candidate waits.
	Heartbeat time.Duration
	Election  time.Duration
	// Commit is how soon an idle leader tells followers a new commit
	// index: the bound on how long an acknowledged change takes to be in
	// force on followers.
	Commit time.Duration
	// SnapshotThreshold is how many entries are written between snapshots
	// (and log compactions).
	SnapshotThreshold uint64
}

// Defaults, for members on one LAN: a leader lost is replaced in about a
// second, and a follower applies a commit within 10–20 ms.
const (
	DefaultHeartbeat         = 500 * time.Millisecond
	DefaultElection          = 500 * time.Millisecond
	DefaultCommit            = 10 * time.Millisecond
	DefaultSnapshotThreshold = 1024
)

// Peers is what a store needs of the cluster's membership.
type Peers interface {
	// RaftAddress returns a member's Raft address, as it announced it.
	RaftAddress(name string) (string, bool)
	// Reachable returns how many configured members, this one included,
	// are alive in the gossip.
	Reachable() int
}

// NoQuorumError refuses a write on a member that cannot reach a majority,
// or that has no leader to hand it to.
type NoQuorumError struct {
	Reachable int    `json:"reachable"`
	Members   int    `json:"members"`
	Detail    string `json:"detail,omitempty"`
}

func (e *NoQuorumError) Error() string {
	msg := fmt.Sprintf("no quorum: %d of %d members reachable", e.Reachable, e.Members)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg + "; changes need a majority, try again when the cluster is whole (C5)"
}

// Unavailable marks the error for a 503.
func (e *NoQuorumError) Unavailable() bool { return true }

// noStateDir refuses every write of a node without a state directory.
type noStateDir struct{}

func (noStateDir) Error() string {
	return "no state directory (the state line of the pgplane block): a change must be written to disk before it is acknowledged (C5)"
}

// Unavailable marks the error for a 503.
func (noStateDir) Unavailable() bool { return true }

// ErrNoStateDir refuses a change on a node that cannot write it to disk.
var ErrNoStateDir error = noStateDir{}

// errNotLeader sends a write back to find the leader again.
var errNotLeader = errors.New("not the leader")

// logFile is the Raft log and stable store (raft-boltdb) in DIR/raft.
const logFile = "raft.db"

// writeTimeout bounds a write: finding a leader, its commit, and its
// application on the member that took it.
const writeTimeout = 5 * time.Second

// Store is one member's share of the replicated run-time changes.
type Store struct {
	cfg  Config
	fsm  *fsm
	log  zerolog.Logger
	raft *raft.Raft
	// raftReady is closed once raft is set: the stream layer takes
	// forwarded writes before it is.
	raftReady chan struct{}
	// listening, if set (by tests), runs when the stream layer accepts
	// and Raft is not set yet: the window raftReady covers.
	listening func()
	stream    *streamLayer // nil for a node without peers
	db        *raftboltdb.BoltStore
	peers     Peers // nil for a node without peers
	// gone is set when the Raft log's directory was found removed: Raft is
	// stopped on this node and every write refused with it.
	gone atomic.Pointer[StateDirError]
	// stopped is closed by Stop.
	stopped chan struct{}

	// leading serialises the leader's writes: each is checked against the
	// state every earlier one made.
	leading   sync.Mutex
	barrierAt uint64 // the term whose earlier entries are known applied
}

// Open reads the state this member had applied, so that it serves at once;
// Start joins the Raft cluster. Without a Dir nothing is kept, and every
// write is refused with ErrNoStateDir.
func Open(cfg Config) (*Store, error) {
	s := &Store{cfg: cfg, log: cfg.Logger, stopped: make(chan struct{})}
	dir := ""
	if cfg.Dir != "" {
		dir = filepath.Join(cfg.Dir, "raft")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	f, err := openFSM(dir, cfg.Node, s.report)
	if err != nil {
		return nil, err
	}
	f.applied = cfg.Applied
	s.fsm = f
	entries.Set(float64(f.size()))
	appliedIndex.Set(float64(f.at))
	return s, nil
}

// report logs an error of the store's background work.
func (s *Store) report(err error) { s.log.Error().Err(err).Msg("state") }

// Values returns a copy of the run-time changes applied: the whole state,
// for a whole rebuild.
func (s *Store) Values() map[string]json.RawMessage { return s.fsm.Values() }

// Value returns the run-time value applied at key, and whether the state
// holds one (a nil value is a deletion the state keeps).
func (s *Store) Value(key string) (json.RawMessage, bool) { return s.fsm.value(key) }

// Under returns a copy of the run-time values applied at key and below it
// (key + "/..."): one object's changes, at the cost of their number.
func (s *Store) Under(key string) map[string]json.RawMessage { return s.fsm.under(key) }

// Address returns the Raft address this member announces to the others:
// Advertise, else Bind; "" when it runs no Raft transport (no state
// directory, or no peers).
func (s *Store) Address() string {
	switch {
	case s.cfg.Dir == "":
		return ""
	case s.cfg.Advertise != "":
		return s.cfg.Advertise
	}
	return s.cfg.Bind
}

// Dir returns the state directory, "" for none.
func (s *Store) Dir() string { return s.cfg.Dir }

// Start opens the Raft log and joins the members, whose Raft addresses
// peers gives (nil for a node without peers): it bootstraps a member
// without Raft data with the configured members, and catches up with the
// leader otherwise.
func (s *Store) Start(peers Peers) error {
	if s.cfg.Dir == "" {
		return nil
	}
	s.peers = peers
	dir := filepath.Join(s.cfg.Dir, "raft")
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.Node)
	rc.Logger = newHCLogger(s.log)
	t := s.cfg.Timing
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.CommitTimeout = orDefault(t.Heartbeat, DefaultHeartbeat), orDefault(t.Election, DefaultElection), orDefault(t.Commit, DefaultCommit)
	rc.LeaderLeaseTimeout = rc.HeartbeatTimeout / 2
	rc.SnapshotThreshold = DefaultSnapshotThreshold
	if t.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	rc.TrailingLogs = rc.SnapshotThreshold
	rc.SnapshotInterval = 30 * time.Second

	db, err := raftboltdb.NewBoltStore(filepath.Join(dir, logFile))
	if err != nil {
		return fmt.Errorf("raft log %s: %w", filepath.Join(dir, logFile), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rc.Logger)
	if err != nil {
		closeAll(nil, db)
		return fmt.Errorf("raft snapshots in %s: %w", dir, err)
	}
	var trans raft.Transport
	if s.cfg.Bind == "" {
		// A node without peers is its only voter: it elects itself as
		// soon as it may.
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		_, trans = raft.NewInmemTransport(raft.ServerAddress(s.cfg.Node))
	} else {
		server, client, err := transportTLS(s.cfg.Key)
		if err != nil {
			closeAll(nil, db)
			return err
		}
		s.raftReady = make(chan struct{})
		if s.stream, err = newStreamLayer(s.cfg.Bind, s.cfg.Advertise, server, client, s.serveForward, s.report); err != nil {
			closeAll(nil, db)
			return err
		}
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: s.stream, MaxPool: 3, Timeout: 2 * time.Second, Logger: rc.Logger,
			ServerAddressProvider: addressProvider{s.peers},
		})
		if s.listening != nil {
			s.listening()
		}
	}
	logs, err := newGuardedLog(db, dir, s.stateDirGone)
	if err != nil {
		closeAll(trans, db)
		return err
	}
	existing, err := raft.HasExistingState(logs, db, snaps)
	if err == nil && !existing {
		var servers []raft.Server
		for _, m := range s.cfg.Members {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m), Address: raft.ServerAddress(m)})
		}
		if s.cfg.Bind == "" {
			servers = []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}
		}
		err = raft.BootstrapCluster(rc, logs, db, snaps, trans, raft.Configuration{Servers: servers})
	}
	if err != nil {
		closeAll(trans, db)
		return fmt.Errorf("raft state in %s: %w", dir, err)
	}
	r, err := raft.NewRaft(rc, s.fsm, logs, db, snaps, trans)
	if err != nil {
		closeAll(trans, db)
		return fmt.Errorf("starting Raft: %w", err)
	}
	s.raft, s.db = r, db
	if s.raftReady != nil {
		close(s.raftReady)
	}
	go s.watchLeadership()
	s.importPrevious()
	return nil
}

func closeAll(trans raft.Transport, db *raftboltdb.BoltStore) {
	if c, ok := trans.(raft.WithClose); ok {
		c.Close()
	}
	db.Close()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Stop leaves Raft running no more; the log and state stay on disk.
func (s *Store) Stop() {
	defer s.fsm.close()
	if s.raft == nil {
		return
	}
	close(s.stopped)
	if err := s.raft.Shutdown().Error(); err != nil {
		s.report(fmt.Errorf("stopping Raft: %w", err))
	}
	if s.stream != nil {
		s.stream.Close()
	}
	s.db.Close()
}

// stateDirGone stops Raft on this node once its log's directory is found
// removed: an election loop that cannot write its log would go on for
// ever. Raft's own goroutine finds it, so the shutdown runs on another.
func (s *Store) stateDirGone(err *StateDirError) {
	s.gone.Store(err)
	s.log.Error().Err(err).Msg("state: Raft stopped on this node; DNS, the gateway and reads go on from the state applied")
	go s.raft.Shutdown()
}

// addressProvider dials members by the Raft address they announce in the
// gossip.
type addressProvider struct{ peers Peers }

func (p addressProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if p.peers == nil {
		return "", fmt.Errorf("member %s: no gossip to find it in", id)
	}
	if addr, ok := p.peers.RaftAddress(string(id)); ok {
		return raft.ServerAddress(addr), nil
	}
	return "", fmt.Errorf("member %s has not announced a Raft address in the gossip", id)
}

// Change commits a change and returns once it is applied on this member: a
// nil value deletes the object at its key. It returns the rule's
// violations (topology.Violations, topology.OverlayProblem) when the
// change is refused, a *NoQuorumError when no majority can commit it, and
// ErrNoStateDir on a member without a state directory. A refused change
// changes nothing.
func (s *Store) Change(changes map[string]json.RawMessage) error {
	return s.write(forwardRequest{Origin: s.cfg.Node, Changes: changes})
}

func (s *Store) write(req forwardRequest) error {
	if s.raft == nil {
		return ErrNoStateDir
	}
	if gone := s.gone.Load(); gone != nil {
		return gone
	}
	deadline := time.Now().Add(writeTimeout)
	index, err := s.propose(req, deadline)
	if err != nil {
		return err
	}
	return s.waitApplied(index, deadline)
}

// propose hands a write to the leader, this member or another, and returns
// the index of its committed entry.
func (s *Store) propose(req forwardRequest, deadline time.Time) (uint64, error) {
	members := len(s.cfg.Members)
	for {
		if n := s.reachable(); n < members/2+1 {
			return 0, &NoQuorumError{Reachable: n, Members: members}
		}
		var (
			index uint64
			err   error
		)
		leaderAddr, leaderID := s.raft.LeaderWithID()
		switch {
		case s.raft.State() == raft.Leader:
			index, err = s.lead(req)
		case leaderID == "":
			err = errNotLeader
		default:
			addr, ok := string(leaderAddr), leaderAddr != ""
			if s.peers != nil {
				addr, ok = s.peers.RaftAddress(string(leaderID))
			}
			if !ok || s.stream == nil {
				err = errNotLeader
				break
			}
			index, err = s.forwardTo(addr, req)
		}
		if !errors.Is(err, errNotLeader) && !errors.As(err, new(*unreachableError)) {
			return index, err
		}
		if time.Now().After(deadline) {
			detail := "no leader elected"
			if err != nil && !errors.Is(err, errNotLeader) {
				detail = err.Error()
			}
			return 0, s.noQuorum(detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lead checks and commits a write on the leader, one at a time: each is
// checked against the state every earlier entry made.
func (s *Store) lead(req forwardRequest) (uint64, error) {
	s.leading.Lock()
	defer s.leading.Unlock()
	if s.raft.State() != raft.Leader {
		return 0, errNotLeader
	}
	// A new leader may hold committed entries it has not applied yet: a
	// barrier applies them before the first check of its term.
	if term := s.raft.CurrentTerm(); s.barrierAt != term {
		if err := s.raft.Barrier(writeTimeout).Error(); err != nil {
			return 0, s.lost(err)
		}
		s.barrierAt = term
	}
	changes := req.Changes
	if req.Import {
		changes = map[string]json.RawMessage{}
		for k, v := range req.Changes {
			if !s.fsm.has(k) {
				changes[k] = v
			}
		}
	}
	if len(changes) == 0 {
		index, _ := s.fsm.index()
		return max(index, 1), nil
	}
	if s.cfg.Check != nil {
		if err := s.cfg.Check(changes); err != nil {
			return 0, err
		}
	}
	cmd := command{Origin: req.Origin, Changes: map[string]json.RawMessage{}}
	for _, k := range slices.Sorted(maps.Keys(changes)) {
		if changes[k] == nil && s.cfg.Defined != nil && !s.cfg.Defined(k) {
			cmd.Forget = append(cmd.Forget, k)
			continue
		}
		cmd.Changes[k] = changes[k]
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return 0, fmt.Errorf("encoding the change: %w", err)
	}
	if err := s.roomFor(len(data)); err != nil {
		return 0, err
	}
	f := s.raft.Apply(data, writeTimeout)
	if err := f.Error(); err != nil {
		return 0, s.lost(err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return 0, err
	}
	return f.Index(), nil
}

// reachable returns how many members this one sees alive, itself
// included: all of them without peers.
func (s *Store) reachable() int {
	if s.peers == nil {
		return len(s.cfg.Members)
	}
	return s.peers.Reachable()
}

// noQuorum is the refusal of a write that found no majority to commit it.
func (s *Store) noQuorum(detail string) *NoQuorumError {
	return &NoQuorumError{Reachable: s.reachable(), Members: len(s.cfg.Members), Detail: detail}
}

// lost turns Raft's errors of a leader that lost its majority into a
// NoQuorumError.
func (s *Store) lost(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return errNotLeader
	case errors.As(err, new(*StateDirError)):
		return err
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return s.noQuorum("the leader could not commit in time")
	}
	return fmt.Errorf("committing the change: %w", err)
}

// waitApplied waits until this member applied the entry at index, so that
// what it serves next holds the change its caller made.
func (s *Store) waitApplied(index uint64, deadline time.Time) error {
	for {
		at, changed := s.fsm.index()
		if at >= index {
			return nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return fmt.Errorf("the change is committed (entry %d) but not yet applied on %s (at entry %d)", index, s.cfg.Node, at)
		}
		select {
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// watchLeadership keeps the leader metric and, on the leader, the Raft
// configuration equal to the configured members.
func (s *Store) watchLeadership() {
	for {
		var leading bool
		select {
		case <-s.stopped:
			return
		case leading = <-s.raft.LeaderCh():
		}
		if leading {
			leader.Set(1)
			s.log.Info().Str("node", s.cfg.Node).Uint64("term", s.raft.CurrentTerm()).Msg("state: this member leads the Raft cluster")
			s.reconcileMembers()
		} else {
			leader.Set(0)
		}
	}
}

// reconcileMembers adds configured members that Raft does not know as
// voters and removes the ones no longer configured.
func (s *Store) reconcileMembers() {
	if s.cfg.Bind == "" {
		return
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	known := map[string]bool{}
	for _, srv := range f.Configuration().Servers {
		known[string(srv.ID)] = true
		if !slices.Contains(s.cfg.Members, string(srv.ID)) {
			s.log.Info().Str("member", string(srv.ID)).Msg("state: removing a member no longer in cluster_members from Raft")
			if err := s.raft.RemoveServer(srv.ID, 0, writeTimeout).Error(); err != nil {
				s.report(fmt.Errorf("removing member %s: %w", srv.ID, err))
			}
		}
	}
	for _, m := range s.cfg.Members {
		if !known[m] {
			s.log.Info().Str("member", m).Msg("state: adding a member of cluster_members to Raft")
			if err := s.raft.AddVoter(raft.ServerID(m), raft.ServerAddress(m), 0, writeTimeout).Error(); err != nil {
				s.report(fmt.Errorf("adding member %s: %w", m, err))
			}
		}
	}
}

// Status is what a member knows of the Raft cluster.
type Status struct {
	State    string `json:"state"`
	Leader   string `json:"leader,omitempty"`
	Term     uint64 `json:"term"`
	Applied  uint64 `json:"applied_index"`
	Entries  int    `json:"entries"`
	LastSeen string `json:"last_contact,omitempty"`
	// Stopped says why Raft stopped on this node while it runs.
	Stopped string `json:"stopped,omitempty"`
}

// Status reports the member's Raft state.
func (s *Store) Status() Status {
	index, _ := s.fsm.index()
	st := Status{State: "none", Applied: index}
	st.Entries = s.fsm.size()
	if s.raft == nil {
		return st
	}
	if gone := s.gone.Load(); gone != nil {
		st.Stopped = gone.Error()
	}
	st.State = s.raft.State().String()
	st.Term = s.raft.CurrentTerm()
	_, id := s.raft.LeaderWithID()
	st.Leader = string(id)
	if lc := s.raft.LastContact(); !lc.IsZero() && s.raft.State() != raft.Leader {
		st.LastSeen = time.Since(lc).Round(time.Millisecond).String()
	}
	return st
}
