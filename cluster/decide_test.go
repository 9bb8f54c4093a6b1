package cluster

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pgplane/pgplane/topology"
)

const testTopology = `regions:
  - {name: eastus2, gateways: [10.9.0.1, 10.9.0.2, 10.9.0.3]}
vnets:
  - name: app-vnet
    region: eastus2
    addressSpaces: [10.0.0.0/16]
    subnets: [{name: db, cidr: 10.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]
privateDnsZones:
  - {name: z.private.postgres.database.azure.com, links: [app-vnet]}
servers:
  - name: orders-db
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: z.private.postgres.database.azure.com}
    highAvailability: true
    addresses: {primary: 10.0.1.4, standby: 10.0.1.5}
    backends: {primary: "10.0.1.4:5432", standby: "10.0.1.5:5432"}
`

func testSnapshot(t *testing.T) *topology.Snapshot {
	t.Helper()
	topo, _, err := topology.Parse("t.yaml", []byte(testTopology))
	if err != nil {
		t.Fatal(err)
	}
	s, err := topology.NewSnapshot(topo, topology.State{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	t0      = time.Unix(1000, 0)
	gw1     = GatewayTarget("eastus2", netip.MustParseAddr("10.9.0.1"))
	gw2     = GatewayTarget("eastus2", netip.MustParseAddr("10.9.0.2"))
	gw3     = GatewayTarget("eastus2", netip.MustParseAddr("10.9.0.3"))
	primary = BackendTarget("orders-db", false)
	standby = BackendTarget("orders-db", true)
)

// holdings: node b holds the secondary gateway address, c the tertiary.
var holdings = map[string][]string{"b": {"10.9.0.2:5432"}, "c": {"10.9.0.3:5432"}}

// views keeps each test node's current down set, so that one target's vote
// can change at a time.
var views = map[*Ballot]map[string]map[Target]bool{}

func vote(b *Ballot, node string, t Target, down bool, seq uint64, at time.Time) {
	if views[b] == nil {
		views[b] = map[string]map[Target]bool{}
	}
	if views[b][node] == nil {
		views[b][node] = map[Target]bool{}
	}
	views[b][node][t] = down
	set := VoteSet{Node: node, Seq: seq, Holds: holdings[node]}
	for target, d := range views[b][node] {
		if d {
			set.Down = append(set.Down, target)
		}
	}
	b.Record(set, at)
}

// SPEC: C3
func TestQuorumNeeded(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	vote(b, "a", gw1, true, 1, t0)
	if d := decideState(s, topology.State{}, b, t0); len(d) != 0 {
		t.Fatalf("one vote of three must not flip: %v", d)
	}
	vote(b, "b", gw1, true, 1, t0)
	d := decideState(s, topology.State{}, b, t0)
	if len(d) != 1 || d[0].Key != "region/eastus2" || d[0].Value != 1 {
		t.Fatalf("two of three must flip to the secondary: %v", d)
	}
}

// SPEC: C3
func TestTwoOfFourIsNoQuorum(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c", "d"}, 3*time.Second)
	vote(b, "a", gw1, true, 1, t0)
	vote(b, "b", gw1, true, 1, t0)
	vote(b, "c", gw1, false, 1, t0)
	vote(b, "d", gw1, false, 1, t0)
	if d := decideState(s, topology.State{}, b, t0); len(d) != 0 {
		t.Fatalf("a tie must not flip: %v", d)
	}
}

// SPEC: C3
func TestStaleVotesExpire(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	vote(b, "a", gw1, true, 1, t0)
	vote(b, "b", gw1, true, 1, t0.Add(-5*time.Second)) // received long ago: a node since cut off
	if d := decideState(s, topology.State{}, b, t0); len(d) != 0 {
		t.Fatalf("a stale vote must not count: %v", d)
	}
}

// SPEC: C3
func TestIsolatedNodeAloneNeverFlips(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	// c is cut off: it sees everything down and hears nobody.
	for _, target := range []Target{gw1, gw2, gw3, primary, standby} {
		vote(b, "c", target, true, 1, t0)
	}
	if d := decideState(s, topology.State{}, b, t0); len(d) != 0 {
		t.Fatalf("an isolated node must not flip: %v", d)
	}
}

// SPEC: C3
func TestVotesOfStrangersAndOldSeqIgnored(t *testing.T) {
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	if b.Record(VoteSet{Node: "mallory", Down: []Target{gw1}, Seq: 1}, t0) {
		t.Fatal("a node that is not a configured member has no vote")
	}
	vote(b, "a", gw1, true, 5, t0)
	vote(b, "a", gw1, false, 4, t0) // delivered late
	if down, _ := b.Tally(gw1, t0); down != 1 {
		t.Fatal("an older vote must not replace a newer one")
	}
}

// SPEC: C4
func TestFailoverIsSticky(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	state := topology.State{FailedOver: map[string]bool{"orders-db": true}, ActiveGateway: map[string]int{"eastus2": 1}}
	// The old primaries are healthy again: nothing moves back.
	for _, n := range []string{"a", "b", "c"} {
		vote(b, n, gw1, false, 1, t0)
		vote(b, n, primary, false, 1, t0)
		vote(b, n, gw2, false, 1, t0)
		vote(b, n, standby, false, 1, t0)
	}
	if d := decideState(s, state, b, t0); len(d) != 0 {
		t.Fatalf("failover must be sticky: %v", d)
	}
	// The standby fails: the server goes back to the primary.
	vote(b, "a", standby, true, 2, t0)
	vote(b, "b", standby, true, 2, t0)
	d := decideState(s, state, b, t0)
	if len(d) != 1 || d[0].Key != "server/orders-db" || d[0].Value != 0 {
		t.Fatalf("when the standby fails the primary takes over: %v", d)
	}
}

// SPEC: C4
func TestNoFlipWhenBothBackendsDown(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	for _, n := range []string{"a", "b"} {
		vote(b, n, primary, true, 1, t0)
		vote(b, n, standby, true, 1, t0)
	}
	if d := decideState(s, topology.State{}, b, t0); len(d) != 0 {
		t.Fatalf("flipping to a dead standby helps nobody: %v", d)
	}
}

// SPEC: C4 T1
func TestGatewaySkipsDownSecondaryToTertiary(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	for _, n := range []string{"a", "b", "c"} {
		vote(b, n, gw1, true, 1, t0)
	}
	for _, n := range []string{"a", "c"} {
		vote(b, n, gw2, true, 2, t0)
	}
	d := decideState(s, topology.State{}, b, t0)
	if len(d) != 1 || d[0].Value != 2 {
		t.Fatalf("want the tertiary, got %v", d)
	}
}

// SPEC: C4 G1
func TestStandbyAddressNeedsALiveHolder(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	vote(b, "a", gw1, true, 1, t0)
	vote(b, "c", gw1, true, 1, t0)
	vote(b, "b", gw1, true, 1, t0.Add(-10*time.Second)) // b, holding the secondary, is gone
	d := decideState(s, topology.State{}, b, t0)
	if len(d) != 1 || d[0].Value != 2 {
		t.Fatalf("the secondary's holder is gone: want the tertiary (held by live c), got %v", d)
	}
	if port, live := b.Holder(netip.MustParseAddr("10.9.0.2"), t0); live || port != 5432 {
		t.Fatalf("b's hold: port %d live %v", port, live)
	}
}

// SPEC: C3
func TestFlappingTargetFlipsOnlyOnQuorum(t *testing.T) {
	s := testSnapshot(t)
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	flips := 0
	for i := 0; i < 20; i++ {
		now := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		// a and b disagree and alternate: never two down votes at once.
		vote(b, "a", primary, i%2 == 0, uint64(i+1), now)
		vote(b, "b", primary, i%2 == 1, uint64(i+1), now)
		flips += len(decideState(s, topology.State{}, b, now))
	}
	if flips != 0 {
		t.Fatalf("alternating single votes must never flip, got %d", flips)
	}
}

// SPEC: C5 C4
func TestClockOrdersVersions(t *testing.T) {
	now := t0
	c := NewClock("b", func() time.Time { return now })
	v1 := c.Next()
	v2 := c.Next() // same wall time: logical counter
	if !v1.Less(v2) {
		t.Fatalf("versions must increase: %v %v", v1, v2)
	}
	c.Observe(Version{Wall: t0.Add(time.Hour).UnixNano(), Node: "a"})
	if v3 := c.Next(); !(Version{Wall: t0.Add(time.Hour).UnixNano(), Node: "a"}).Less(v3) {
		t.Fatalf("after observing a newer version the clock must pass it: %v", v3)
	}
	if !(Version{Wall: 1, Node: "a"}).Less(Version{Wall: 1, Node: "b"}) {
		t.Fatal("the node name breaks ties")
	}
}

// SPEC: C4 D10
func TestApply(t *testing.T) {
	s := testSnapshot(t)
	st := Apply(s, map[string]Decision{
		"region/eastus2":   {Value: 2},
		"server/orders-db": {Value: 1},
		"server/gone-db":   {Value: 1},
		"region/mars":      {Value: 1},
	})
	if st.ActiveGateway["eastus2"] != 2 || !st.FailedOver["orders-db"] || len(st.FailedOver) != 1 || len(st.ActiveGateway) != 1 {
		t.Fatalf("state %+v", st)
	}
}

// decideState decides without roles from the decisions a state implies.
func decideState(s *topology.Snapshot, state topology.State, b *Ballot, now time.Time) []Decision {
	return Decide(Situation{Snapshot: s, Decisions: decisionsOf(state), Ballot: b, Now: now})
}

func decisionsOf(state topology.State) map[string]Decision {
	out := map[string]Decision{}
	for r, v := range state.ActiveGateway {
		out["region/"+r] = Decision{Key: "region/" + r, Value: v}
	}
	for name, on := range state.FailedOver {
		if on {
			out[ServerKey(name)] = Decision{Key: ServerKey(name), Value: 1}
		}
	}
	return out
}

// East US 2 with the addresses Azure published for it fails over from its
// primary to its secondary, then to its tertiary.
//
// SPEC: T1 C3 C4
func TestPublishedEastUS2FailsOverThroughItsThreeAddresses(t *testing.T) {
	topo, _, err := topology.Parse("t.yaml", []byte("regions: [{name: eastus2, gateways: published}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := topology.NewSnapshot(topo, topology.State{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	addrs := topology.PublishedGateways("eastus2")
	target := func(i int) Target { return GatewayTarget("eastus2", netip.MustParseAddr(addrs[i])) }
	b := NewBallot([]string{"a", "b", "c"}, 3*time.Second)
	hold := map[string][]string{"b": {addrs[1] + ":5432"}, "c": {addrs[2] + ":5432"}}
	down := map[string][]Target{}
	seq := uint64(0)
	voteDown := func(i int, nodes ...string) {
		seq++
		for _, n := range nodes {
			down[n] = append(down[n], target(i))
			b.Record(VoteSet{Node: n, Seq: seq, Holds: hold[n], Down: down[n]}, t0)
		}
	}
	voteDown(0, "a", "b", "c")
	d := decideState(s, topology.State{}, b, t0)
	if len(d) != 1 || d[0].Key != "region/eastus2" || d[0].Value != 1 {
		t.Fatalf("primary %s down: want the secondary, got %v", addrs[0], d)
	}
	voteDown(1, "a", "c")
	d = decideState(s, topology.State{ActiveGateway: map[string]int{"eastus2": 1}}, b, t0)
	if len(d) != 1 || d[0].Value != 2 {
		t.Fatalf("secondary %s down too: want the tertiary %s, got %v", addrs[1], addrs[2], d)
	}
}
