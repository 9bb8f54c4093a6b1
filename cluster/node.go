// Package cluster makes several pgplane appliance nodes act as one: it runs
// a hashicorp/memberlist cluster, probes every server backend and gateway
// address from every node, gossips each node's votes, and turns a quorum of
// "down" votes into a versioned failover decision that every node applies
// alike (SPEC.md C1–C4, C6).
//
// Its files, one job each, after memberlist's own: node.go (a node's life:
// start, join, stop), config.go, probe.go (probe rounds), roles.go (the
// backends' roles), votes.go (sending votes), decide.go (the pure policy:
// votes and topology in, decisions out), decisions.go (taking, keeping and
// operating decisions), delegate.go (memberlist's callbacks and messages),
// status.go, files.go and metrics.go. Run-time changes are not gossiped:
// package raftstate commits them through Raft, with the addresses members
// announce here.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

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
		if cfg.VoteTTL = voteTTL(cfg.ProbeInterval, cfg.ProbeTimeout); cfg.VoteTTL > DefaultVoteTTL {
			cfg.Logger.Info().Dur("vote_ttl", cfg.VoteTTL).Dur("probe_interval", cfg.ProbeInterval).Dur("probe_timeout", cfg.ProbeTimeout).
				Msg("cluster: probes slower than the default: a node's votes count for two probe rounds")
		}
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
	transport, err := newBoundTransport(host, port, mc.Logger)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if port == 0 {
		mc.BindPort = transport.GetAutoBindPort()
		if cfg.Advertise == "" {
			mc.AdvertisePort = mc.BindPort
		}
	}
	mc.Transport = transport
	if n.ml, err = memberlist.Create(mc); err != nil {
		transport.Shutdown()
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

// Joined reports whether the node is in touch with the cluster: it sees
// another member alive, or it is the only configured member.
func (n *Node) Joined() bool {
	return len(n.cfg.Members) == 1 || n.ml.NumMembers() > 1
}

// RaftAddress returns the Raft address a live member announced.
func (n *Node) RaftAddress(name string) (string, bool) {
	for _, m := range n.ml.Members() {
		if m.Name != name {
			continue
		}
		var meta nodeMeta
		if json.Unmarshal(m.Meta, &meta) != nil || meta.Raft == "" {
			return "", false
		}
		return meta.Raft, true
	}
	return "", false
}

// Reachable returns how many configured members, this one included, are
// alive in the gossip.
func (n *Node) Reachable() int {
	alive := 0
	for _, m := range n.ml.Members() {
		if m.State == memberlist.StateAlive && contains(n.cfg.Members, m.Name) {
			alive++
		}
	}
	return alive
}
