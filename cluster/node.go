package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/pgplane/pgplane/topology"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// Config configures a cluster node.
type Config struct {
	// Name is this node's name; it must be one of Members.
	Name string
	// Members are the names of every configured node, witnesses included.
	// A flip needs ⌊len(Members)/2⌋+1 of them (C3).
	Members []string
	// Bind and Advertise are the gossip addresses, IP:port.
	Bind      string
	Advertise string
	// Join lists other nodes' gossip addresses; the node rejoins them
	// periodically, so that a node cut off and forgotten comes back.
	Join []string
	// Key encrypts gossip (16, 24 or 32 bytes). Required unless Dev.
	Key []byte
	Dev bool
	// NodeID is the gateway node ID written into cancel keys (0 to 127).
	NodeID uint8
	// ProbeInterval, ProbeTimeout and FailAfter: a target is down after
	// FailAfter failed probes in a row (C2).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	FailAfter     int
	// VoteTTL is how long a node's votes count without being refreshed.
	VoteTTL time.Duration
	// GatewayPort is the port probed on a gateway address whose port no
	// member has announced.
	GatewayPort int
	// Holds are this node's gateway listen addresses (IP:port).
	Holds []string
	// StateDir, when set, keeps the failover decisions on disk, so that a
	// failover stays in force through a restart of every node (C4).
	StateDir string
	Logger   zerolog.Logger
}

// Defaults, chosen so that a dead target is flipped on every node within
// about a second and a half (C4's 3 s bound).
const (
	DefaultProbeInterval = 300 * time.Millisecond
	DefaultProbeTimeout  = 300 * time.Millisecond
	DefaultFailAfter     = 2
	DefaultVoteTTL       = 1500 * time.Millisecond
	rejoinInterval       = 5 * time.Second
)

// Hooks connect a node to the rest of the appliance.
type Hooks struct {
	// Snapshot returns the current topology snapshot.
	Snapshot func() *topology.Snapshot
	// Apply is called with the state every decision so far yields.
	Apply func(topology.State)
	// Cancel delivers a cancel request forwarded by another node.
	Cancel func(pid, secret uint32)
	// Store is the replicated state the node gossips (C5); nil for none.
	Store *Store
	// Changed is called after a peer's entries changed the store.
	Changed func()
}

// Node is one member of the cluster.
type Node struct {
	cfg   Config
	hooks Hooks
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue

	mu        sync.Mutex
	ballot    *Ballot
	clock     *Clock
	decisions map[string]Decision
	seq       uint64
	failures  map[Target]int
	down      map[Target]bool

	stop chan struct{}
	done sync.WaitGroup
}

// message kinds on the wire: one byte, then JSON.
const (
	msgVotes    = 'v'
	msgDecision = 'd'
	msgCancel   = 'c'
	msgEntries  = 'e'
)

// pushPullInterval is how often a node exchanges its whole state with a
// random peer (anti-entropy); broadcasts carry changes at once.
const pushPullInterval = 10 * time.Second

// New starts a node: it binds, joins what it can reach and starts probing.
func New(cfg Config, hooks Hooks) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("cluster: a node needs a name")
	}
	if !contains(cfg.Members, cfg.Name) {
		return nil, fmt.Errorf("cluster: node %q is not in the members list %v", cfg.Name, cfg.Members)
	}
	if len(cfg.Key) == 0 && !cfg.Dev {
		return nil, errors.New("cluster: gossip needs an encryption key (cluster_key_file); only dev mode runs without one (C1)")
	}
	if n := len(cfg.Key); n != 0 && n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("cluster: the gossip key is %d bytes; want 16, 24 or 32", n)
	}
	if len(cfg.Members) == 2 {
		cfg.Logger.Warn().Msg("cluster of two members: a flip needs both, so add a witness (a DNS-only node) to survive the loss of one")
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = DefaultFailAfter
	}
	if cfg.VoteTTL <= 0 {
		cfg.VoteTTL = DefaultVoteTTL
	}
	if cfg.GatewayPort == 0 {
		cfg.GatewayPort = 5432
	}
	n := &Node{
		cfg: cfg, hooks: hooks,
		ballot:    NewBallot(cfg.Members, cfg.VoteTTL),
		clock:     NewClock(cfg.Name, time.Now),
		decisions: map[string]Decision{},
		failures:  map[Target]int{},
		down:      map[Target]bool{},
		stop:      make(chan struct{}),
	}
	if err := n.loadDecisions(); err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
	}
	if len(cfg.Key) > 0 {
		mc.SecretKey = cfg.Key
	}
	mc.DeadNodeReclaimTime = time.Second // a restarted node with the same name rejoins at once
	mc.PushPullInterval = pushPullInterval
	mc.Delegate = (*delegate)(n)
	mc.Logger = log.New(io.Discard, "", 0)
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return n.ml.NumMembers() }, RetransmitMult: 3}
	if n.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("cluster: starting memberlist on %s: %w", cfg.Bind, err)
	}
	if len(n.decisions) > 0 {
		// Decisions from before a restart are in force at once (C4).
		n.hooks.Apply(Apply(n.hooks.Snapshot(), n.decisions))
	}
	n.join()
	n.done.Add(2)
	go n.every(n.cfg.ProbeInterval, n.round)
	go n.every(rejoinInterval, n.rejoin)
	return n, nil
}

// Stop leaves the cluster and stops probing.
func (n *Node) Stop() {
	close(n.stop)
	n.done.Wait()
	n.ml.Leave(time.Second)
	n.ml.Shutdown()
}

func (n *Node) join() {
	if len(n.cfg.Join) == 0 {
		return
	}
	if k, err := n.ml.Join(n.cfg.Join); err != nil && k == 0 {
		n.cfg.Logger.Debug().Err(err).Msg("cluster join")
	}
}

// rejoin joins the configured peers again while members are missing:
// memberlist forgets a node that was cut off long enough, and neither side
// would call.
func (n *Node) rejoin() {
	if n.ml.NumMembers() < len(n.cfg.Members) {
		n.join()
	}
}

// round probes every target, votes, and decides.
func (n *Node) round() {
	n.probeAll()
	n.sendVotes()
	n.decide()
	n.observeGossip()
}

// every runs f each interval until Stop.
func (n *Node) every(interval time.Duration, f func()) {
	defer n.done.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			f()
		}
	}
}

// probeAll probes every target at once and updates this node's down set.
func (n *Node) probeAll() {
	targets := n.targets(n.hooks.Snapshot())
	results := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = probe(t.addr, t.postgres, n.cfg.ProbeTimeout)
		}()
	}
	wg.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[Target]bool{}
	for i, t := range targets {
		seen[t.id] = true
		observeProbe(t.id, results[i])
		if results[i] {
			targetUp.WithLabelValues(string(t.id)).Set(1)
			if n.down[t.id] {
				n.cfg.Logger.Info().Str("target", string(t.id)).Msg("probe: target is up again")
			}
			n.failures[t.id] = 0
			delete(n.down, t.id)
			continue
		}
		n.failures[t.id]++
		if n.failures[t.id] >= n.cfg.FailAfter && !n.down[t.id] {
			n.down[t.id] = true
			targetUp.WithLabelValues(string(t.id)).Set(0)
			n.cfg.Logger.Warn().Str("target", string(t.id)).Str("address", t.addr).Int("failed_probes", n.failures[t.id]).Msg("probe: target is down")
		}
	}
	for id := range n.failures {
		if !seen[id] {
			delete(n.failures, id)
			delete(n.down, id)
			targetUp.DeleteLabelValues(string(id))
		}
	}
}

type probeTarget struct {
	id       Target
	addr     string
	postgres bool // a backend: expect an answer to an SSLRequest
}

// targets are every HA server's backends and every region's active gateway
// address: the things a flip depends on. A standby gateway address does not
// listen before it is activated; its holder's liveness stands for it.
func (n *Node) targets(s *topology.Snapshot) []probeTarget {
	var out []probeTarget
	for name, si := range s.Servers {
		if !si.Server.HighAvailability {
			continue
		}
		out = append(out,
			probeTarget{BackendTarget(name, false), si.Server.Backends.Primary, true},
			probeTarget{BackendTarget(name, true), si.Server.Backends.Standby, true})
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, r := range s.Regions {
		port, _ := n.ballot.Holder(r.Active, time.Now())
		if port == 0 {
			port = uint16(n.cfg.GatewayPort)
		}
		out = append(out, probeTarget{GatewayTarget(name, r.Active), netip.AddrPortFrom(r.Active, port).String(), false})
	}
	return out
}

// probe connects to a target; a PostgreSQL backend must also answer an
// SSLRequest with S or N.
func probe(addr string, postgres bool, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	if !postgres {
		return true
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return false
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return false
	}
	return b[0] == 'S' || b[0] == 'N'
}

// sendVotes records this node's vote set and sends it to every member.
func (n *Node) sendVotes() {
	n.mu.Lock()
	n.seq++
	v := VoteSet{Node: n.cfg.Name, Seq: n.seq, Holds: n.cfg.Holds}
	for t := range n.down {
		v.Down = append(v.Down, t)
	}
	n.ballot.Record(v, time.Now())
	n.mu.Unlock()
	n.sendAll(encode(msgVotes, v))
}

// packetLimit is the largest message sent in a UDP packet or queued for
// gossip; a larger one goes over TCP, directly and by push/pull.
const packetLimit = 1000

// sendAll sends a message to every other live member directly (UDP, or TCP
// when it is too large for a packet).
func (n *Node) sendAll(msg []byte) {
	for _, m := range n.ml.Members() {
		if m.Name == n.cfg.Name {
			continue
		}
		if len(msg) < packetLimit {
			n.ml.SendBestEffort(m, msg)
		} else {
			n.ml.SendReliable(m, msg)
		}
	}
}

// decide makes the decisions the ballot calls for and applies them.
func (n *Node) decide() {
	snap := n.hooks.Snapshot()
	n.mu.Lock()
	now := time.Now()
	var made []Decision
	for _, d := range Decide(snap, Apply(snap, n.decisions), n.ballot, now) {
		d.Version = n.clock.Next()
		n.decisions[d.Key] = d
		made = append(made, d)
	}
	var state topology.State
	if len(made) > 0 {
		n.saveDecisionsLocked()
		state = Apply(snap, n.decisions)
	}
	n.mu.Unlock()
	for _, d := range made {
		kind, _, _ := cut(d.Key)
		flipsTotal.WithLabelValues(kind, "quorum").Inc()
		n.cfg.Logger.Warn().Str("decision", d.Key).Int("value", d.Value).Str("reason", d.Reason).Msg("cluster: failover")
		n.spread(encode(msgDecision, d))
	}
	if len(made) > 0 {
		n.hooks.Apply(state)
	}
}

// takeDecision merges a decision from another node: the newest version of
// each key wins on every node alike.
func (n *Node) takeDecision(d Decision) {
	n.mu.Lock()
	n.clock.Observe(d.Version)
	old, ok := n.decisions[d.Key]
	if ok && !old.Version.Less(d.Version) {
		n.mu.Unlock()
		return
	}
	n.decisions[d.Key] = d
	n.saveDecisionsLocked()
	state := Apply(n.hooks.Snapshot(), n.decisions)
	n.mu.Unlock()
	n.cfg.Logger.Warn().Str("decision", d.Key).Int("value", d.Value).Str("by", d.Version.Node).Str("reason", d.Reason).Msg("cluster: failover decided by a peer")
	n.hooks.Apply(state)
}

// Decisions returns the decisions in force.
func (n *Node) Decisions() []Decision {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Decision, 0, len(n.decisions))
	for _, d := range n.decisions {
		out = append(out, d)
	}
	return out
}

// ForwardCancel sends a cancel request to the node whose gateway owns the
// session (G2a). It reports false when no live member has that node ID.
func (n *Node) ForwardCancel(node uint8, pid, secret uint32) bool {
	for _, m := range n.ml.Members() {
		var meta nodeMeta
		if json.Unmarshal(m.Meta, &meta) != nil || meta.NodeID != node || m.Name == n.cfg.Name {
			continue
		}
		return n.ml.SendReliable(m, encode(msgCancel, cancelMsg{PID: pid, Secret: secret})) == nil
	}
	return false
}

type cancelMsg struct {
	PID    uint32 `json:"pid"`
	Secret uint32 `json:"secret"`
}

type nodeMeta struct {
	NodeID uint8 `json:"node_id"`
}

// state is what push/pull anti-entropy exchanges: every decision and the
// replicated state.
type state struct {
	Decisions []Decision      `json:"decisions"`
	Store     json.RawMessage `json:"store,omitempty"`
}

func encode(kind byte, v any) []byte {
	b, _ := json.Marshal(v)
	return append([]byte{kind}, b...)
}

// delegate is the memberlist.Delegate of a Node.
type delegate Node

// NodeMeta announces the node's gateway node ID, for forwarded cancels.
func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(nodeMeta{NodeID: d.cfg.NodeID})
	return b
}

// NotifyMsg takes a message from a peer: votes, a decision, a cancel or run-time changes.
func (d *delegate) NotifyMsg(b []byte) {
	n := (*Node)(d)
	if len(b) < 2 {
		return
	}
	switch b[0] {
	case msgVotes:
		var v VoteSet
		if json.Unmarshal(b[1:], &v) != nil {
			return
		}
		n.mu.Lock()
		changed := n.ballot.Record(v, time.Now())
		n.mu.Unlock()
		if changed {
			n.decide()
		}
	case msgDecision:
		var dec Decision
		if json.Unmarshal(b[1:], &dec) == nil {
			n.takeDecision(dec)
		}
	case msgCancel:
		var c cancelMsg
		if json.Unmarshal(b[1:], &c) == nil && n.hooks.Cancel != nil {
			n.hooks.Cancel(c.PID, c.Secret)
		}
	case msgEntries:
		var entries []Entry
		if json.Unmarshal(b[1:], &entries) == nil && n.hooks.Store != nil {
			n.storeChanged(n.hooks.Store.Merge(entries))
		}
	}
}

// storeChanged reports a merge's outcome to the plugin.
func (n *Node) storeChanged(changed bool, err error) {
	if err != nil {
		n.cfg.Logger.Error().Err(err).Msg("cluster: replicated state not written to disk")
	}
	if changed && n.hooks.Changed != nil {
		n.hooks.Changed()
	}
}

// Spread sends entries committed on this node to every member at once and
// queues them for gossip, which reaches members that missed the direct send;
// push/pull anti-entropy catches up the rest (C5).
func (n *Node) Spread(entries []Entry) {
	if len(entries) == 0 {
		return
	}
	n.spread(encode(msgEntries, entries))
}

// spread sends msg to every live member at once and, when it fits a packet,
// queues it for gossip too. A large message goes over TCP, which can wait
// on a member that died a moment ago, so it is sent in the background: the
// caller has done its part (a change is on disk) and does not wait.
func (n *Node) spread(msg []byte) {
	if len(msg) >= packetLimit {
		go n.sendAll(msg)
		return
	}
	n.queue.QueueBroadcast(broadcast(msg))
	n.sendAll(msg)
}

// GetBroadcasts hands memberlist the queued gossip.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState is this node's side of a push/pull exchange: decisions and the replicated state.
func (d *delegate) LocalState(join bool) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	defer n.mu.Unlock()
	var st state
	for _, dec := range n.decisions {
		st.Decisions = append(st.Decisions, dec)
	}
	if n.hooks.Store != nil {
		st.Store = n.hooks.Store.Full()
	}
	b, _ := json.Marshal(st)
	return b
}

// MergeRemoteState takes a peer's side of a push/pull exchange.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	var st state
	if json.Unmarshal(buf, &st) != nil {
		return
	}
	n := (*Node)(d)
	for _, dec := range st.Decisions {
		n.takeDecision(dec)
	}
	if n.hooks.Store != nil && len(st.Store) > 0 {
		n.storeChanged(n.hooks.Store.MergeFull(st.Store))
	}
}

// broadcast is a message for memberlist's gossip queue.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	return host, p, err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Status is a node's view of the cluster, for `pgplanectl cluster show`.
type Status struct {
	Node      string              `json:"node"`
	Members   []MemberStatus      `json:"members"`
	Quorum    int                 `json:"quorum"`
	Down      map[Target][]string `json:"down"` // target -> the members that see it down now
	Decisions []Decision          `json:"decisions"`
}

// MemberStatus is one configured member as this node sees it.
type MemberStatus struct {
	Name       string `json:"name"`
	Gossip     string `json:"gossip"`      // memberlist's view: alive, suspect, dead, or absent
	VotesFresh bool   `json:"votes_fresh"` // its votes count now
}

// Status returns this node's view of the cluster.
func (n *Node) Status() Status {
	now := time.Now()
	alive := map[string]string{}
	for _, m := range n.ml.Members() {
		alive[m.Name] = map[memberlist.NodeStateType]string{memberlist.StateAlive: "alive", memberlist.StateSuspect: "suspect", memberlist.StateDead: "dead", memberlist.StateLeft: "left"}[m.State]
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := Status{Node: n.cfg.Name, Quorum: n.ballot.Quorum(), Down: map[Target][]string{}}
	fresh := map[string]bool{}
	for _, m := range n.ballot.Fresh(now) {
		fresh[m] = true
	}
	for _, m := range n.ballot.Members() {
		g := alive[m]
		if g == "" {
			g = "absent"
		}
		st.Members = append(st.Members, MemberStatus{Name: m, Gossip: g, VotesFresh: fresh[m]})
		if v, ok := n.ballot.votes[m]; ok && fresh[m] {
			for t := range v.down {
				st.Down[t] = append(st.Down[t], m)
			}
		}
	}
	for _, d := range n.decisions {
		st.Decisions = append(st.Decisions, d)
	}
	sort.Slice(st.Decisions, func(i, j int) bool { return st.Decisions[i].Key < st.Decisions[j].Key })
	return st
}

// ErrTargetDown refuses an operator's move to a target a quorum sees down.
var ErrTargetDown = errors.New("target is down")

// Operate records an operator's decision (a planned failover or a
// failback) as a new version, after checking that a quorum does not see the
// new target down, and spreads it to every node (C4).
func (n *Node) Operate(key string, value int, reason string) (Decision, error) {
	snap := n.hooks.Snapshot()
	kind, name, _ := cut(key)
	n.mu.Lock()
	now := time.Now()
	var target Target
	switch kind {
	case "region":
		r := snap.Regions[name]
		if r == nil || value < 0 || value >= len(r.Gateways) {
			n.mu.Unlock()
			return Decision{}, fmt.Errorf("region %q has no gateway address number %d", name, value)
		}
		target = GatewayTarget(name, r.Gateways[value])
		if _, live := n.ballot.Holder(r.Gateways[value], now); !live && value != Apply(snap, n.decisions).ActiveGateway[name] {
			n.mu.Unlock()
			return Decision{}, fmt.Errorf("%w: no live node holds gateway address %s", ErrTargetDown, r.Gateways[value])
		}
	case "server":
		si := snap.Servers[name]
		if si == nil || !si.Server.HighAvailability {
			n.mu.Unlock()
			return Decision{}, fmt.Errorf("server %q is not a high-availability server", name)
		}
		target = BackendTarget(name, value == 1)
	default:
		n.mu.Unlock()
		return Decision{}, fmt.Errorf("unknown decision key %q", key)
	}
	if down, _ := n.ballot.Tally(target, now); down >= n.ballot.Quorum() {
		n.mu.Unlock()
		return Decision{}, fmt.Errorf("%w: %d of %d members see %s down", ErrTargetDown, down, len(n.ballot.Members()), target)
	}
	d := Decision{Key: key, Value: value, Reason: reason, Version: n.clock.Next()}
	n.decisions[key] = d
	n.saveDecisionsLocked()
	state := Apply(snap, n.decisions)
	n.mu.Unlock()
	flipsTotal.WithLabelValues(kind, "operator").Inc()
	n.cfg.Logger.Warn().Str("decision", key).Int("value", value).Str("reason", reason).Msg("cluster: operator decision")
	n.spread(encode(msgDecision, d))
	n.hooks.Apply(state)
	return d, nil
}

// Joined reports whether the node is in touch with the cluster: it sees
// another member alive, or it is the only configured member.
func (n *Node) Joined() bool {
	return len(n.cfg.Members) == 1 || n.ml.NumMembers() > 1
}

const decisionsFileName = "decisions.json"

// loadDecisions reads the decisions a previous run left in the state
// directory.
func (n *Node) loadDecisions() error {
	if n.cfg.StateDir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(n.cfg.StateDir, decisionsFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: reading decisions: %w", err)
	}
	var ds []Decision
	if err := json.Unmarshal(b, &ds); err != nil {
		return fmt.Errorf("cluster: %s: %w", filepath.Join(n.cfg.StateDir, decisionsFileName), err)
	}
	for _, d := range ds {
		n.decisions[d.Key] = d
		n.clock.Observe(d.Version)
	}
	return nil
}

// saveDecisionsLocked writes the decisions in force; a failure is logged,
// since a decision is made by a quorum whether or not one node can write.
func (n *Node) saveDecisionsLocked() {
	if n.cfg.StateDir == "" {
		return
	}
	ds := make([]Decision, 0, len(n.decisions))
	for _, k := range slices.Sorted(maps.Keys(n.decisions)) {
		ds = append(ds, n.decisions[k])
	}
	b, _ := json.Marshal(ds)
	if err := writeFileAtomic(n.cfg.StateDir, decisionsFileName, b); err != nil {
		n.cfg.Logger.Error().Err(err).Msg("cluster: decisions not written to disk")
	}
}
