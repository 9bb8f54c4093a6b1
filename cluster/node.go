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
	"sync/atomic"
	"time"

	"github.com/pgplane/pgplane/pgwire"
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
	// Monitor is the role backends' roles are probed with (C6); nil: none,
	// and HA servers without Patroni endpoints fail over on liveness alone.
	Monitor *Monitor
	Logger  zerolog.Logger
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
	roles     map[Target]Role   // this node's probes' view of backends' roles
	roleErrs  map[Target]string // the last role probe error, logged once
	downSince map[Target]time.Time
	alarms    map[string]Alarm // by server and kind
	prober    *roleProber

	// work runs what peers' messages call for (a decision, run-time
	// changes: disk writes and snapshot rebuilds) off memberlist's packet
	// goroutine, which must not block; deciding is queued once at a time.
	work          chan func()
	decidePending atomic.Bool

	stop chan struct{}
	done sync.WaitGroup
}

// workQueue bounds the messages waiting for the worker; past it a message
// is dropped, and push/pull anti-entropy brings what it carried.
const workQueue = 1024

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
		roles:     map[Target]Role{},
		roleErrs:  map[Target]string{},
		downSince: map[Target]time.Time{},
		alarms:    map[string]Alarm{},
		prober:    newRoleProber(cfg.Monitor, cfg.ProbeInterval, cfg.ProbeTimeout),
		work:      make(chan func(), workQueue),
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
	n.done.Add(3)
	go n.every(n.cfg.ProbeInterval, n.round)
	go n.every(rejoinInterval, n.rejoin)
	go n.worker()
	return n, nil
}

// Stop leaves the cluster and stops probing.
func (n *Node) Stop() {
	close(n.stop)
	n.done.Wait()
	n.ml.Leave(time.Second)
	n.ml.Shutdown()
	n.prober.close()
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

// probeResult is what one probe learned.
type probeResult struct {
	up      bool
	role    Role
	roleErr error
}

// probeAll probes every target at once and updates this node's down set
// and the roles of the backends it sees up.
func (n *Node) probeAll() {
	targets := n.targets(n.hooks.Snapshot())
	results := make([]probeResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			if r.up = probe(t.addr, t.postgres, n.cfg.ProbeTimeout); r.up && t.postgres {
				r.role, r.roleErr = n.prober.role(t.addr, t.patroni)
			}
		}()
	}
	wg.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[Target]bool{}
	probed := map[string]bool{}
	for i, t := range targets {
		seen[t.id] = true
		if t.patroni != "" {
			probed[t.patroni] = true
		} else {
			probed[t.addr] = true
		}
		r := results[i]
		observeProbe(t.id, r.up)
		if t.postgres {
			n.observeRoleLocked(t, r)
		}
		if r.up {
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
			delete(n.roles, id)
			delete(n.roleErrs, id)
			targetUp.DeleteLabelValues(string(id))
		}
	}
	n.prober.forget(probed)
}

// observeRoleLocked keeps the role a backend probe learned, logging a
// change of role and each new kind of role probe failure once.
func (n *Node) observeRoleLocked(t probeTarget, r probeResult) {
	if !r.up {
		return // a backend down has no role; its last one is kept for the log
	}
	if old, ok := n.roles[t.id]; !ok || old != r.role {
		if r.role != RoleUnknown {
			n.cfg.Logger.Info().Str("target", string(t.id)).Str("address", t.addr).Str("role", string(r.role)).Str("was", string(roleOrUnknown(old))).Msg("probe: backend role")
		}
		n.roles[t.id] = r.role
	}
	observeRole(t.id, r.role)
	msg := ""
	if r.roleErr != nil {
		msg = r.roleErr.Error()
	}
	if msg != n.roleErrs[t.id] && msg != "" {
		n.cfg.Logger.Error().Str("target", string(t.id)).Str("address", t.addr).Str("error", msg).Msg("probe: cannot learn the backend's role")
	}
	n.roleErrs[t.id] = msg
}

type probeTarget struct {
	id       Target
	addr     string
	postgres bool   // a backend: expect an answer to an SSLRequest
	patroni  string // a backend's Patroni endpoint, if it has one
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
			probeTarget{BackendTarget(name, false), si.Server.Backends.Primary, true, si.Failover.Patroni[0]},
			probeTarget{BackendTarget(name, true), si.Server.Backends.Standby, true, si.Failover.Patroni[1]})
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, r := range s.Regions {
		port, _ := n.ballot.Holder(r.Active, time.Now())
		if port == 0 {
			port = uint16(n.cfg.GatewayPort)
		}
		out = append(out, probeTarget{id: GatewayTarget(name, r.Active), addr: netip.AddrPortFrom(r.Active, port).String()})
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
	if _, err := c.Write(pgwire.SSLRequest()); err != nil {
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
	for t, r := range n.roles {
		switch {
		case n.down[t] || n.failures[t] > 0:
			// Not up now: a role learned before does not count.
		case r == RolePrimary:
			v.Primary = append(v.Primary, t)
		case r == RoleStandby:
			v.Standby = append(v.Standby, t)
		}
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

// decide makes the decisions the ballot calls for and applies them: flips
// and fences are in force at once; a promotion is run by this node.
func (n *Node) decide() {
	snap := n.hooks.Snapshot()
	n.mu.Lock()
	now := time.Now()
	n.trackDownSinceLocked(snap, now)
	var made []Decision
	for _, d := range Decide(Situation{Snapshot: snap, Decisions: n.decisions, Ballot: n.ballot, Now: now, DownSince: n.downSince, Roles: n.cfg.Monitor != nil}) {
		d.Version = n.clock.Next()
		n.decisions[d.Key] = d
		made = append(made, d)
	}
	var state topology.State
	if len(made) > 0 {
		n.saveDecisionsLocked()
		state = Apply(snap, n.decisions)
	}
	raised, cleared := n.updateAlarmsLocked(snap, now)
	n.mu.Unlock()
	for _, d := range made {
		kind, name, _ := cut(d.Key)
		switch kind {
		case "promote":
			n.cfg.Logger.Warn().Str("decision", d.Key).Str("reason", d.Reason).Msg("cluster: promoting the standby")
			go n.promote(snap.Servers[name], d.Value == 1)
		case "fence":
			n.cfg.Logger.Warn().Str("decision", d.Key).Int("value", d.Value).Str("reason", d.Reason).Msg("cluster: fence")
		default:
			flipsTotal.WithLabelValues(kind, "quorum").Inc()
			n.cfg.Logger.Warn().Str("decision", d.Key).Int("value", d.Value).Str("reason", d.Reason).Msg("cluster: failover")
		}
		n.spread(encode(msgDecision, d))
	}
	n.logAlarms(raised, cleared)
	if len(made) > 0 {
		n.hooks.Apply(state)
	}
}

// trackDownSinceLocked notes when a quorum began to see each HA server's
// backend down, for pgplane.promote's grace.
func (n *Node) trackDownSinceLocked(snap *topology.Snapshot, now time.Time) {
	for t := range n.downSince {
		if !n.ballot.IsDown(t, now) {
			delete(n.downSince, t)
		}
	}
	for name, si := range snap.Servers {
		if !si.Server.HighAvailability {
			continue
		}
		for _, t := range []Target{BackendTarget(name, false), BackendTarget(name, true)} {
			if _, ok := n.downSince[t]; !ok && n.ballot.IsDown(t, now) {
				n.downSince[t] = now
			}
		}
	}
}

// updateAlarmsLocked recomputes the alarms and returns those raised and
// cleared since the last time.
func (n *Node) updateAlarmsLocked(snap *topology.Snapshot, now time.Time) (raised, cleared []Alarm) {
	current := map[string]Alarm{}
	for _, a := range Alarms(snap, n.decisions, n.ballot, now) {
		key := a.object() + "/" + a.Kind
		current[key] = a
		if _, ok := n.alarms[key]; !ok {
			raised = append(raised, a)
		}
	}
	for key, a := range n.alarms {
		if _, ok := current[key]; !ok {
			cleared = append(cleared, a)
		}
	}
	n.alarms = current
	return raised, cleared
}

// logAlarms reports alarms loudly when they are raised and once when they
// clear, and keeps the alarm metric.
func (n *Node) logAlarms(raised, cleared []Alarm) {
	for _, a := range raised {
		alarms.WithLabelValues(a.object(), a.Kind).Set(1)
		n.cfg.Logger.Error().Str("server", a.Server).Str("region", a.Region).Str("alarm", a.Kind).Msg(a.Message)
	}
	for _, a := range cleared {
		alarms.WithLabelValues(a.object(), a.Kind).Set(0)
		n.cfg.Logger.Warn().Str("server", a.Server).Str("region", a.Region).Str("alarm", a.Kind).Msg("cluster: alarm cleared: " + a.Message)
	}
}

// promoteTimeout bounds a promotion request; pg_promote(false) returns
// at once, and the role probes see the promotion take.
const promoteTimeout = 5 * time.Second

// promote asks an HA server's backend to end recovery.
func (n *Node) promote(si *topology.ServerInfo, standby bool) {
	if si == nil {
		return
	}
	addr := backendAddr(si, standby)
	log := n.cfg.Logger.With().Str("server", si.Server.Name).Str("backend", addr).Logger()
	if err := n.prober.promote(addr, promoteTimeout); err != nil {
		promotionsTotal.WithLabelValues("failed").Inc()
		log.Error().Err(err).Msg("cluster: promotion failed; another node tries again if it stays in recovery")
		return
	}
	promotionsTotal.WithLabelValues("ok").Inc()
	log.Warn().Msg("cluster: promotion requested (pg_promote); the name moves once a quorum sees it primary")
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
	n.cfg.Logger.Warn().Str("decision", d.Key).Int("value", d.Value).Str("by", d.Version.Node).Str("reason", d.Reason).Msg("cluster: decision by a peer")
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
// It decodes the message at once (memberlist may reuse b) and leaves
// anything that writes to disk, rebuilds snapshots or dials to the worker:
// memberlist's Delegate must not block its packet loop, which failure
// detection depends on.
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
		if changed && !n.decidePending.Swap(true) {
			n.enqueue(func() {
				n.decidePending.Store(false)
				n.decide()
			})
		}
	case msgDecision:
		var dec Decision
		if json.Unmarshal(b[1:], &dec) == nil {
			n.enqueue(func() { n.takeDecision(dec) })
		}
	case msgCancel:
		var c cancelMsg
		if json.Unmarshal(b[1:], &c) == nil && n.hooks.Cancel != nil {
			go n.hooks.Cancel(c.PID, c.Secret)
		}
	case msgEntries:
		var entries []Entry
		if json.Unmarshal(b[1:], &entries) == nil && n.hooks.Store != nil {
			n.enqueue(func() { n.storeChanged(n.hooks.Store.Merge(entries)) })
		}
	}
}

// enqueue hands work to the worker without waiting.
func (n *Node) enqueue(f func()) {
	select {
	case n.work <- f:
	default:
		n.cfg.Logger.Warn().Msg("cluster: message queue full, a peer's message is dropped; push/pull anti-entropy brings it")
	}
}

// worker runs the queued work in order until Stop.
func (n *Node) worker() {
	defer n.done.Done()
	for {
		select {
		case <-n.stop:
			return
		case f := <-n.work:
			f()
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
	Node    string              `json:"node"`
	Members []MemberStatus      `json:"members"`
	Quorum  int                 `json:"quorum"`
	Down    map[Target][]string `json:"down"` // target -> the members that see it down now
	// Roles are the backends' roles as each member whose votes count sees
	// them (C6): target -> member -> role.
	Roles     map[Target]map[string]Role `json:"roles,omitempty"`
	Decisions []Decision                 `json:"decisions"`
	// Alarms are conditions an operator must act on, such as a split brain.
	Alarms []Alarm `json:"alarms,omitempty"`
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
	st.Roles = map[Target]map[string]Role{}
	for name, si := range n.hooks.Snapshot().Servers {
		if !si.Server.HighAvailability {
			continue
		}
		for _, t := range []Target{BackendTarget(name, false), BackendTarget(name, true)} {
			if r := n.ballot.Roles(t, now); len(r) > 0 {
				st.Roles[t] = r
			}
		}
	}
	for _, a := range n.alarms {
		st.Alarms = append(st.Alarms, a)
	}
	sort.Slice(st.Alarms, func(i, j int) bool {
		return st.Alarms[i].object()+st.Alarms[i].Kind < st.Alarms[j].object()+st.Alarms[j].Kind
	})
	for _, d := range n.decisions {
		st.Decisions = append(st.Decisions, d)
	}
	sort.Slice(st.Decisions, func(i, j int) bool { return st.Decisions[i].Key < st.Decisions[j].Key })
	return st
}

// ErrTargetDown refuses an operator's move to a target a quorum sees down.
var ErrTargetDown = errors.New("target is down")

// ErrRoleRefused refuses an operator's move of an HA server's name to a
// standby in recovery, or to a fenced backend without the override (C6).
var ErrRoleRefused = errors.New("refused by the backends' roles")

// Operate records an operator's decision (a planned failover or a
// failback) as a new version, after checking that a quorum does not see the
// new target down, and spreads it to every node (C4). For an HA server
// whose roles are known the target must not be a standby in recovery, and
// a fenced target is refused unless acceptSplitBrain (C6).
func (n *Node) Operate(key string, value int, reason string, acceptSplitBrain bool) (Decision, error) {
	snap := n.hooks.Snapshot()
	kind, name, _ := cut(key)
	n.mu.Lock()
	now := time.Now()
	var target Target
	var roleServer *topology.ServerInfo // an HA server whose roles are known
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
		if rolesDecide(si, n.cfg.Monitor != nil, n.ballot, now) {
			roleServer = si
		}
	default:
		n.mu.Unlock()
		return Decision{}, fmt.Errorf("unknown decision key %q", key)
	}
	if down, _ := n.ballot.Tally(target, now); down >= n.ballot.Quorum() {
		n.mu.Unlock()
		return Decision{}, fmt.Errorf("%w: %d of %d members see %s down", ErrTargetDown, down, len(n.ballot.Members()), target)
	}
	var also []Decision
	if roleServer != nil {
		var err error
		if also, err = n.checkRoleMoveLocked(roleServer, value, acceptSplitBrain, now); err != nil {
			n.mu.Unlock()
			return Decision{}, err
		}
	}
	d := Decision{Key: key, Value: value, Reason: reason, Version: n.clock.Next()}
	made := []Decision{d}
	for _, a := range also {
		a.Version = n.clock.Next()
		made = append(made, a)
	}
	for _, m := range made {
		n.decisions[m.Key] = m
	}
	n.saveDecisionsLocked()
	state := Apply(snap, n.decisions)
	n.mu.Unlock()
	flipsTotal.WithLabelValues(kind, "operator").Inc()
	for _, m := range made {
		n.cfg.Logger.Warn().Str("decision", m.Key).Int("value", m.Value).Str("reason", m.Reason).Msg("cluster: operator decision")
		n.spread(encode(msgDecision, m))
	}
	n.hooks.Apply(state)
	return d, nil
}

// checkRoleMoveLocked checks an operator's move of an HA server's name to
// backend value against the roles (C6), and returns the fence decisions
// that go with it: with acceptSplitBrain a fenced target is unfenced, and
// the backend left behind is fenced if it claims to be primary.
func (n *Node) checkRoleMoveLocked(si *topology.ServerInfo, value int, acceptSplitBrain bool, now time.Time) ([]Decision, error) {
	name := si.Server.Name
	to, from := value == 1, value != 1
	switch seen := n.ballot.Seen(BackendTarget(name, to), now); {
	case seen == SeenStandby:
		return nil, fmt.Errorf("%w: the %s backend of %s (%s) is a standby in recovery, and the name follows the primary; promote it (SELECT pg_promote()), or let pgplane.promote auto do it, and the name moves by itself",
			ErrRoleRefused, backendName(to), name, backendAddr(si, to))
	case Fenced(n.decisions, name) == value && !acceptSplitBrain:
		return nil, fmt.Errorf("%w: the %s backend of %s (%s) is fenced: it went down as the primary after a failover and may have diverged from the %s backend; rebuild it as a standby of the current primary, or pass --accept-split-brain to route to it anyway and lose to clients every write made on the %s backend since the failover",
			ErrRoleRefused, backendName(to), name, backendAddr(si, to), backendName(from), backendName(from))
	}
	var also []Decision
	if Fenced(n.decisions, name) == value {
		also = append(also, Decision{Key: FenceKey(name), Value: -1, Reason: fmt.Sprintf("operator override (--accept-split-brain): the %s backend is no longer fenced", backendName(to))})
	}
	if n.ballot.Seen(BackendTarget(name, from), now) == SeenPrimary {
		also = append(also, Decision{Key: FenceKey(name), Value: backendIndex(from), Reason: fmt.Sprintf("the operator moved the name away from the %s backend while it claims to be primary: fenced until it runs as a standby", backendName(from))})
	}
	return also, nil
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
