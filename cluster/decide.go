// Package cluster makes several pgplane appliance nodes act as one: it runs
// a hashicorp/memberlist cluster, probes every server backend and gateway
// address from every node, gossips each node's votes, and turns a quorum of
// "down" votes into a versioned failover decision that every node applies
// alike (SPEC.md C1–C4).
//
// The decision logic (this file) is pure: it sees votes and the topology and
// returns decisions, and knows nothing of the network.
package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/pgplane/pgplane/topology"
)

// Target is something the nodes probe: a server's backend or a region's
// gateway address.
type Target string

// BackendTarget names a server's primary (0) or standby (1) backend.
func BackendTarget(server string, standby bool) Target {
	if standby {
		return Target("backend/" + server + "/standby")
	}
	return Target("backend/" + server + "/primary")
}

// GatewayTarget names a region's gateway address.
func GatewayTarget(region string, addr netip.Addr) Target {
	return Target("gateway/" + region + "/" + addr.String())
}

// VoteSet is one node's view of every target: the targets it sees down.
// Every target not in Down it sees up.
type VoteSet struct {
	Node string   `json:"node"`
	Down []Target `json:"down,omitempty"`
	// Holds are the gateway addresses (IP:port) this node serves when they
	// are active: a standby address can take over only while a live node
	// holds it, since it does not listen before.
	Holds []string `json:"holds,omitempty"`
	// Seq orders the vote sets of one node; a lower Seq never replaces a
	// higher one.
	Seq uint64 `json:"seq"`
}

// Decision is a versioned failover record: which gateway address of a region
// is active, or whether an HA server runs on its standby. Every node applies
// the decision with the highest version, so all converge.
type Decision struct {
	// Key is "region/NAME" or "server/NAME".
	Key string
	// Value is the active gateway index of a region, or 1 for a server on
	// its standby and 0 for one on its primary.
	Value   int
	Version Version
	// Reason says why, for logs and `pgplanectl cluster show`.
	Reason string
}

// Version is a hybrid logical clock reading with the deciding node as
// tiebreak.
type Version struct {
	Wall    int64  // unix nanoseconds, or the highest seen
	Logical uint32 // increments within one wall reading
	Node    string
}

// Less orders versions: wall time, then logical counter, then node name.
func (v Version) Less(o Version) bool {
	if v.Wall != o.Wall {
		return v.Wall < o.Wall
	}
	if v.Logical != o.Logical {
		return v.Logical < o.Logical
	}
	return v.Node < o.Node
}

// Clock is a hybrid logical clock.
type Clock struct {
	node string
	last Version
	now  func() time.Time
}

// NewClock makes a clock for a node.
func NewClock(node string, now func() time.Time) *Clock {
	return &Clock{node: node, now: now, last: Version{Node: node}}
}

// Next returns a version newer than every version the clock has issued or
// observed.
func (c *Clock) Next() Version {
	wall := c.now().UnixNano()
	if wall > c.last.Wall {
		c.last = Version{Wall: wall, Node: c.node}
	} else {
		c.last = Version{Wall: c.last.Wall, Logical: c.last.Logical + 1, Node: c.node}
	}
	return c.last
}

// Observe moves the clock past a version seen from another node.
func (c *Clock) Observe(v Version) {
	if c.last.Less(v) {
		c.last = Version{Wall: v.Wall, Logical: v.Logical, Node: c.node}
	}
}

// Ballot holds the latest vote set of every configured member with the time
// it was received; a vote set older than the TTL no longer counts (C3).
type Ballot struct {
	members []string
	ttl     time.Duration
	votes   map[string]receivedVotes
}

type receivedVotes struct {
	seq   uint64
	at    time.Time
	down  map[Target]bool
	holds []netip.AddrPort
}

// NewBallot makes a ballot for the configured members.
func NewBallot(members []string, ttl time.Duration) *Ballot {
	m := append([]string(nil), members...)
	sort.Strings(m)
	return &Ballot{members: m, ttl: ttl, votes: map[string]receivedVotes{}}
}

// Quorum is ⌊N/2⌋+1 of the configured members.
func (b *Ballot) Quorum() int { return len(b.members)/2 + 1 }

// Members returns the configured members.
func (b *Ballot) Members() []string { return b.members }

// Record takes a vote set received at a time. Sets of nodes that are not
// configured members are ignored; an older Seq never replaces a newer one.
// It reports whether the node's down set changed.
func (b *Ballot) Record(v VoteSet, at time.Time) bool {
	if !b.isMember(v.Node) {
		return false
	}
	old, ok := b.votes[v.Node]
	if ok && old.seq > v.Seq {
		return false
	}
	down := make(map[Target]bool, len(v.Down))
	for _, t := range v.Down {
		down[t] = true
	}
	var holds []netip.AddrPort
	for _, h := range v.Holds {
		if ap, err := netip.ParseAddrPort(h); err == nil {
			holds = append(holds, ap)
		}
	}
	b.votes[v.Node] = receivedVotes{seq: v.Seq, at: at, down: down, holds: holds}
	if !ok || len(old.down) != len(down) {
		return true
	}
	for t := range down {
		if !old.down[t] {
			return true
		}
	}
	return false
}

func (b *Ballot) isMember(n string) bool {
	i := sort.SearchStrings(b.members, n)
	return i < len(b.members) && b.members[i] == n
}

// Tally counts the fresh down and up votes of a target at a time.
func (b *Ballot) Tally(t Target, now time.Time) (down, up int) {
	for _, v := range b.votes {
		if now.Sub(v.at) > b.ttl {
			continue
		}
		if v.down[t] {
			down++
		} else {
			up++
		}
	}
	return down, up
}

// IsDown reports whether a quorum of configured members voted the target
// down recently.
func (b *Ballot) IsDown(t Target, now time.Time) bool {
	down, _ := b.Tally(t, now)
	return down >= b.Quorum()
}

// Holder reports the port of a gateway address as some member announced it,
// and whether a member whose votes count now holds it.
func (b *Ballot) Holder(addr netip.Addr, now time.Time) (port uint16, live bool) {
	for _, v := range b.votes {
		for _, h := range v.holds {
			if h.Addr() == addr {
				port = h.Port()
				if now.Sub(v.at) <= b.ttl {
					return port, true
				}
			}
		}
	}
	return port, false
}

// Fresh returns the members whose votes count now.
func (b *Ballot) Fresh(now time.Time) []string {
	var out []string
	for _, m := range b.members {
		if v, ok := b.votes[m]; ok && now.Sub(v.at) <= b.ttl {
			out = append(out, m)
		}
	}
	return out
}

// Decide looks at the ballot and the current state and returns the
// decisions to make now: a region whose active gateway address a quorum saw
// down moves to the next address (in order, wrapping) that a live member
// holds and a quorum does not see down; an HA server whose active backend a quorum saw down moves to the
// other backend if that is not seen down. Failover is sticky: nothing moves
// back by itself (C4).
func Decide(s *topology.Snapshot, state topology.State, b *Ballot, now time.Time) []Decision {
	var out []Decision
	regions := make([]string, 0, len(s.Regions))
	for name := range s.Regions {
		regions = append(regions, name)
	}
	sort.Strings(regions)
	for _, name := range regions {
		r := s.Regions[name]
		active := state.ActiveGateway[name]
		if !b.IsDown(GatewayTarget(name, r.Gateways[active]), now) {
			continue
		}
		for step := 1; step < len(r.Gateways); step++ {
			next := (active + step) % len(r.Gateways)
			if _, live := b.Holder(r.Gateways[next], now); live && !b.IsDown(GatewayTarget(name, r.Gateways[next]), now) {
				out = append(out, Decision{Key: "region/" + name, Value: next,
					Reason: fmt.Sprintf("gateway address %s seen down by a quorum; %s takes over", r.Gateways[active], r.Gateways[next])})
				break
			}
		}
	}
	servers := make([]string, 0, len(s.Servers))
	for name, si := range s.Servers {
		if si.Server.HighAvailability {
			servers = append(servers, name)
		}
	}
	sort.Strings(servers)
	for _, name := range servers {
		onStandby := state.FailedOver[name]
		if !b.IsDown(BackendTarget(name, onStandby), now) || b.IsDown(BackendTarget(name, !onStandby), now) {
			continue
		}
		value, from, to := 1, "primary", "standby"
		if onStandby {
			value, from, to = 0, "standby", "primary"
		}
		out = append(out, Decision{Key: "server/" + name, Value: value,
			Reason: fmt.Sprintf("%s backend seen down by a quorum; %s takes over", from, to)})
	}
	return out
}

// Apply returns the state that a set of decisions (the newest per key)
// yields. Decisions for regions or servers that no longer exist are ignored.
func Apply(s *topology.Snapshot, decisions map[string]Decision) topology.State {
	st := topology.State{ActiveGateway: map[string]int{}, FailedOver: map[string]bool{}}
	for key, d := range decisions {
		kind, name, _ := cut(key)
		switch kind {
		case "region":
			if r := s.Regions[name]; r != nil && d.Value >= 0 && d.Value < len(r.Gateways) {
				st.ActiveGateway[name] = d.Value
			}
		case "server":
			if si := s.Servers[name]; si != nil && si.Server.HighAvailability && d.Value == 1 {
				st.FailedOver[name] = true
			}
		}
	}
	return st
}

func cut(key string) (kind, name string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}
