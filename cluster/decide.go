package cluster

// The decision policy: pure, it sees votes and the topology and returns
// decisions, and knows nothing of the network.

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
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
	// Primary and Standby are the backends this node sees up, by the role
	// its probe learned (C6); a backend up in neither has no known role.
	Primary []Target `json:"primary,omitempty"`
	Standby []Target `json:"standby,omitempty"`
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
	roles map[Target]Role
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
	roles := make(map[Target]Role, len(v.Primary)+len(v.Standby))
	for _, t := range v.Primary {
		roles[t] = RolePrimary
	}
	for _, t := range v.Standby {
		roles[t] = RoleStandby
	}
	b.votes[v.Node] = receivedVotes{seq: v.Seq, at: at, down: down, roles: roles, holds: holds}
	return !ok || !maps.Equal(old.down, down) || !maps.Equal(old.roles, roles)
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

// Seen is what a quorum of fresh votes agrees a backend is.
type Seen int

// What a quorum sees.
const (
	SeenUnclear Seen = iota // no quorum agrees
	SeenDown
	SeenPrimary
	SeenStandby
)

func (s Seen) String() string {
	return [...]string{"unclear", "down", "primary", "standby"}[s]
}

// Seen tells what a quorum of the configured members sees a backend as
// now: down, up as primary, up as standby, or none of these.
func (b *Ballot) Seen(t Target, now time.Time) Seen {
	var down, primary, standby int
	for _, v := range b.votes {
		if now.Sub(v.at) > b.ttl {
			continue
		}
		switch {
		case v.down[t]:
			down++
		case v.roles[t] == RolePrimary:
			primary++
		case v.roles[t] == RoleStandby:
			standby++
		}
	}
	switch q := b.Quorum(); {
	case down >= q:
		return SeenDown
	case primary >= q:
		return SeenPrimary
	case standby >= q:
		return SeenStandby
	}
	return SeenUnclear
}

// HasRoles reports whether any member whose votes count reports a role
// for a backend.
func (b *Ballot) HasRoles(t Target, now time.Time) bool {
	for _, v := range b.votes {
		if now.Sub(v.at) <= b.ttl && v.roles[t] != RoleUnknown {
			return true
		}
	}
	return false
}

// Roles returns the role each member whose votes count sees a backend in.
func (b *Ballot) Roles(t Target, now time.Time) map[string]Role {
	out := map[string]Role{}
	for m, v := range b.votes {
		if now.Sub(v.at) <= b.ttl && !v.down[t] && v.roles[t] != RoleUnknown {
			out[m] = v.roles[t]
		}
	}
	return out
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

// Situation is what Decide looks at.
type Situation struct {
	Snapshot *topology.Snapshot
	// Decisions are the decisions in force, by key.
	Decisions map[string]Decision
	Ballot    *Ballot
	Now       time.Time
	// DownSince is when this node began to see a quorum vote each target
	// down, for the targets a quorum sees down now.
	DownSince map[Target]time.Time
	// Roles: this cluster probes backends' roles with a monitoring role.
	// Servers with Patroni endpoints have roles in any case.
	Roles bool
}

// Decide looks at the ballot and the decisions in force and returns the
// decisions to make now.
//
// A region whose active gateway address a quorum saw down moves to the next
// address (in order, wrapping) that a live member holds and a quorum does
// not see down (C4).
//
// An HA server whose backends' roles are known follows the primary (C6):
// see decideByRole. Without roles, a server whose active backend a quorum
// saw down moves to the other backend if that is not seen down. Either way
// failover is sticky: nothing moves back by itself (C4).
func Decide(sit Situation) []Decision {
	s, b, now := sit.Snapshot, sit.Ballot, sit.Now
	state := Apply(s, sit.Decisions)
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
	servers := make([]string, 0, s.ServerCount())
	for name, si := range s.Servers() {
		if si.Server.HighAvailability {
			servers = append(servers, name)
		}
	}
	sort.Strings(servers)
	for _, name := range servers {
		si := s.Server(name)
		if rolesDecide(si, sit.Roles, b, now) {
			out = append(out, decideByRole(sit, si, state.FailedOver[name])...)
			continue
		}
		onStandby := state.FailedOver[name]
		if !b.IsDown(BackendTarget(name, onStandby), now) || b.IsDown(BackendTarget(name, !onStandby), now) {
			continue
		}
		out = append(out, Decision{Key: ServerKey(name), Value: backendIndex(!onStandby),
			Reason: fmt.Sprintf("%s backend seen down by a quorum; %s takes over", backendName(onStandby), backendName(!onStandby))})
	}
	return out
}

// rolesDecide reports whether an HA server's name follows its backends'
// roles: when this node probes them (probing), when the server names
// Patroni endpoints, or when any member's votes carry a role for it, so
// that a node without a monitoring role (a witness configured without one)
// never moves by liveness alone a name the others move by role.
func rolesDecide(si *topology.ServerInfo, probing bool, b *Ballot, now time.Time) bool {
	name := si.Server.Name
	return probing || si.Failover.Patroni[0] != "" || b.HasRoles(BackendTarget(name, false), now) || b.HasRoles(BackendTarget(name, true), now)
}

// promoteRetry is how long after a promotion that did not take the
// standby out of recovery another node tries again.
const promoteRetry = 10 * time.Second

// decideByRole decides for an HA server whose backends' roles are known
// (C6). A is the backend the name points at, O the other:
//   - A seen primary: nothing moves (if O claims primary too, that is a
//     split brain, reported by Alarms, and the name stays on A);
//   - O seen primary while A is down or a standby: the name follows O,
//     unless O is fenced; A is fenced when it went down (it may come back
//     claiming to be primary), not when it was demoted to a standby;
//   - pgplane.promote auto, A seen down for the grace, O a standby and not
//     fenced: promote O (the node that decides runs pg_promote);
//   - a fenced backend seen as a standby (rebuilt) is no longer fenced.
func decideByRole(sit Situation, si *topology.ServerInfo, onStandby bool) []Decision {
	name, b, now := si.Server.Name, sit.Ballot, sit.Now
	active, other := BackendTarget(name, onStandby), BackendTarget(name, !onStandby)
	seenA, seenO := b.Seen(active, now), b.Seen(other, now)
	fenced := Fenced(sit.Decisions, name)
	var out []Decision
	if fenced >= 0 && b.Seen(BackendTarget(name, fenced == 1), now) == SeenStandby {
		out = append(out, Decision{Key: FenceKey(name), Value: -1,
			Reason: fmt.Sprintf("%s backend runs as a standby again: no longer fenced", backendName(fenced == 1))})
		fenced = -1
	}
	switch {
	case seenA == SeenPrimary:
	case seenO == SeenPrimary && (seenA == SeenDown || seenA == SeenStandby) && fenced != backendIndex(!onStandby):
		out = append(out, Decision{Key: ServerKey(name), Value: backendIndex(!onStandby),
			Reason: fmt.Sprintf("%s backend is the primary and the %s backend is %s: the name follows the primary", backendName(!onStandby), backendName(onStandby), seenA)})
		if seenA == SeenDown {
			out = append(out, Decision{Key: FenceKey(name), Value: backendIndex(onStandby),
				Reason: fmt.Sprintf("%s backend went down while primary: fenced until it runs as a standby", backendName(onStandby))})
		}
	case si.Failover.Promote && seenA == SeenDown && seenO == SeenStandby && fenced != backendIndex(!onStandby):
		since, ok := sit.DownSince[active]
		if !ok || now.Sub(since) < si.Failover.Grace {
			break
		}
		if last, ok := sit.Decisions[PromoteKey(name)]; ok && last.Value == backendIndex(!onStandby) &&
			last.Version.Wall >= since.UnixNano() && now.Sub(time.Unix(0, last.Version.Wall)) < promoteRetry {
			break // promoted in this outage already; wait for it to take
		}
		out = append(out, Decision{Key: PromoteKey(name), Value: backendIndex(!onStandby),
			Reason: fmt.Sprintf("%s backend seen down by a quorum for %s (pgplane.promote auto): promoting the %s backend", backendName(onStandby), now.Sub(since).Round(time.Millisecond), backendName(!onStandby))})
	}
	return out
}

// Decision keys.

// ServerKey is the key of an HA server's decision: which backend its name
// points at.
func ServerKey(server string) string { return "server/" + server }

// FenceKey is the key of an HA server's fence: the backend (0 primary, 1
// standby) that is never routed to while it claims to be primary, or -1.
func FenceKey(server string) string { return "fence/" + server }

// PromoteKey is the key of a promotion pgplane made: the backend promoted.
func PromoteKey(server string) string { return "promote/" + server }

// Fenced returns the fenced backend of a server (0 primary, 1 standby), or
// -1 when neither is.
func Fenced(decisions map[string]Decision, server string) int {
	if d, ok := decisions[FenceKey(server)]; ok && (d.Value == 0 || d.Value == 1) {
		return d.Value
	}
	return -1
}

func backendIndex(standby bool) int {
	if standby {
		return 1
	}
	return 0
}

func backendName(standby bool) string {
	if standby {
		return "standby"
	}
	return "primary"
}

// Alarm is a condition an operator must act on.
type Alarm struct {
	Server  string `json:"server,omitempty"`
	Region  string `json:"region,omitempty"`
	Kind    string `json:"kind"` // split_brain, fenced_primary, no_failover_address
	Message string `json:"message"`
}

// object names what an alarm is about: "server/NAME" or "region/NAME".
func (a Alarm) object() string {
	if a.Region != "" {
		return "region/" + a.Region
	}
	return "server/" + a.Server
}

// Alarms returns the conditions of HA servers an operator must act on:
// both backends claiming to be primary (a split brain; the name stays
// where it is and the other backend is never routed to), and an active
// backend down while the only primary is fenced.
func Alarms(s *topology.Snapshot, decisions map[string]Decision, b *Ballot, now time.Time) []Alarm {
	state := Apply(s, decisions)
	var out []Alarm
	for _, name := range slices.Sorted(maps.Keys(s.Regions)) {
		// A region Azure publishes with a primary address only has nothing
		// to fail over to (T1).
		if r := s.Regions[name]; len(r.Gateways) == 1 && b.IsDown(GatewayTarget(name, r.Gateways[0]), now) {
			out = append(out, Alarm{Region: name, Kind: "no_failover_address", Message: fmt.Sprintf(
				"region %s: its only gateway address %s is seen down by a quorum, and it has no secondary address to fail over to", name, r.Gateways[0])})
		}
	}
	for _, name := range s.ServerNames() {
		si := s.Server(name)
		if !si.Server.HighAvailability {
			continue
		}
		onStandby := state.FailedOver[name]
		seenA, seenO := b.Seen(BackendTarget(name, onStandby), now), b.Seen(BackendTarget(name, !onStandby), now)
		if seenO != SeenPrimary {
			continue
		}
		switch {
		case seenA == SeenPrimary:
			out = append(out, Alarm{Server: name, Kind: "split_brain", Message: fmt.Sprintf(
				"split brain: both backends of %s claim to be primary; the name stays on the %s backend (%s) and the %s backend (%s) is never routed to; rebuild it as a standby",
				name, backendName(onStandby), backendAddr(si, onStandby), backendName(!onStandby), backendAddr(si, !onStandby))})
		case Fenced(decisions, name) == backendIndex(!onStandby):
			out = append(out, Alarm{Server: name, Kind: "fenced_primary", Message: fmt.Sprintf(
				"%s: the %s backend (%s) is %s and the only primary, the %s backend (%s), is fenced since it went down after a failover; rebuild one as a standby, or fail over with --accept-split-brain",
				name, backendName(onStandby), backendAddr(si, onStandby), seenA, backendName(!onStandby), backendAddr(si, !onStandby))})
		}
	}
	return out
}

func backendAddr(si *topology.ServerInfo, standby bool) string {
	if standby {
		return si.Server.Backends.Standby
	}
	return si.Server.Backends.Primary
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
			if si := s.Server(name); si != nil && si.Server.HighAvailability && d.Value == 1 {
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
