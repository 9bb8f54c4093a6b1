package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/topology"
)

// rolesTopology: one HA server whose failover parameters the test sets.
const rolesTopology = `regions:
  - {name: eastus2, gateways: [10.9.0.1, 10.9.0.2]}
servers:
  - name: ledger
    region: eastus2
    access: public
    highAvailability: true
    backends: {primary: "10.0.1.4:5432", standby: "10.0.1.5:5432"}
    parameters: PARAMS
`

var (
	ledgerP = BackendTarget("ledger", false)
	ledgerS = BackendTarget("ledger", true)
)

func rolesSnapshot(t *testing.T, params string) *topology.Snapshot {
	t.Helper()
	topo, _, err := topology.Parse("t.yaml", []byte(strings.Replace(rolesTopology, "PARAMS", params, 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := topology.NewSnapshot(topo, topology.State{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// see records what each listed node sees of the two backends: "down",
// "primary", "standby" or "" (up, role unknown).
func see(b *Ballot, seq uint64, at time.Time, nodes []string, primary, standby string) {
	for _, n := range nodes {
		v := VoteSet{Node: n, Seq: seq}
		for t, what := range map[Target]string{ledgerP: primary, ledgerS: standby} {
			switch what {
			case "down":
				v.Down = append(v.Down, t)
			case "primary":
				v.Primary = append(v.Primary, t)
			case "standby":
				v.Standby = append(v.Standby, t)
			}
		}
		b.Record(v, at)
	}
}

// roleCase runs Decide with roles on, as a node whose decisions are kept
// in ds, and applies what it decides.
type roleCase struct {
	t         *testing.T
	snap      *topology.Snapshot
	b         *Ballot
	ds        map[string]Decision
	downSince map[Target]time.Time
	clock     *Clock
}

func newRoleCase(t *testing.T, params string) *roleCase {
	c := &roleCase{t: t, snap: rolesSnapshot(t, params), b: NewBallot([]string{"a", "b", "c"}, time.Hour),
		ds: map[string]Decision{}, downSince: map[Target]time.Time{}}
	c.clock = NewClock("a", func() time.Time { return t0 })
	return c
}

func (c *roleCase) decide(now time.Time) []Decision {
	for _, t := range []Target{ledgerP, ledgerS} {
		if !c.b.IsDown(t, now) {
			delete(c.downSince, t)
		} else if _, ok := c.downSince[t]; !ok {
			c.downSince[t] = now
		}
	}
	c.clock.now = func() time.Time { return now }
	made := Decide(Situation{Snapshot: c.snap, Decisions: c.ds, Ballot: c.b, Now: now, DownSince: c.downSince, Roles: true})
	for i := range made {
		made[i].Version = c.clock.Next()
		c.ds[made[i].Key] = made[i]
	}
	return made
}

func (c *roleCase) onStandby() bool { return c.ds[ServerKey("ledger")].Value == 1 }

func keys(ds []Decision) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Key)
	}
	return strings.Join(out, " ")
}

var abc = []string{"a", "b", "c"}

// SPEC: C6
func TestNameNeverMovesToAStandbyInRecovery(t *testing.T) {
	c := newRoleCase(t, "{}") // promote never
	see(c.b, 1, t0, abc, "down", "standby")
	for s := 0; s < 60; s++ {
		if d := c.decide(t0.Add(time.Duration(s) * time.Second)); len(d) != 0 {
			t.Fatalf("with promote never the name must wait for a promotion: %v", d)
		}
	}
	// Someone promotes the standby: the name follows, and the old primary
	// is fenced.
	at := t0.Add(61 * time.Second)
	see(c.b, 2, at, abc[:2], "down", "primary")
	d := c.decide(at)
	if keys(d) != "server/ledger fence/ledger" || !c.onStandby() || Fenced(c.ds, "ledger") != 0 {
		t.Fatalf("the name must follow the promoted standby and fence the old primary: %v", d)
	}
}

// SPEC: C6 C3
func TestOneNodeSeeingAPrimaryIsNoQuorum(t *testing.T) {
	c := newRoleCase(t, "{}")
	see(c.b, 1, t0, abc, "down", "standby")
	see(c.b, 2, t0, abc[:1], "down", "primary")
	if d := c.decide(t0); len(d) != 0 {
		t.Fatalf("one member's view must not move the name: %v", d)
	}
}

// SPEC: C6
func TestPromoteAutoRidesOutABlipThenPromotesOnce(t *testing.T) {
	c := newRoleCase(t, "{pgplane.promote: auto, pgplane.promote_grace: 3s}")
	see(c.b, 1, t0, abc, "down", "standby")
	if d := c.decide(t0.Add(2 * time.Second)); len(d) != 0 {
		t.Fatalf("inside the grace nothing happens: %v", d)
	}
	// The primary answers again (a blip): the grace starts over.
	see(c.b, 2, t0.Add(2500*time.Millisecond), abc, "primary", "standby")
	c.decide(t0.Add(2500 * time.Millisecond))
	see(c.b, 3, t0.Add(3*time.Second), abc, "down", "standby")
	c.decide(t0.Add(3 * time.Second))
	if d := c.decide(t0.Add(5 * time.Second)); len(d) != 0 {
		t.Fatalf("a blip must restart the grace: %v", d)
	}
	d := c.decide(t0.Add(6100 * time.Millisecond))
	if keys(d) != "promote/ledger" || d[0].Value != 1 || c.onStandby() {
		t.Fatalf("after the grace the standby is promoted, and the name waits: %v", d)
	}
	if d := c.decide(t0.Add(7 * time.Second)); len(d) != 0 {
		t.Fatalf("one promotion per outage until it had time to take: %v", d)
	}
	if d := c.decide(t0.Add(17 * time.Second)); keys(d) != "promote/ledger" {
		t.Fatalf("a promotion that did not take is tried again: %v", d)
	}
	see(c.b, 4, t0.Add(18*time.Second), abc, "down", "primary")
	if d := c.decide(t0.Add(18 * time.Second)); keys(d) != "server/ledger fence/ledger" {
		t.Fatalf("once it takes writes the name follows: %v", d)
	}
}

// SPEC: C6
func TestFencedOldPrimaryIsNeverRoutedTo(t *testing.T) {
	c := newRoleCase(t, "{pgplane.promote: auto}")
	see(c.b, 1, t0, abc, "down", "primary")
	c.decide(t0)
	if !c.onStandby() || Fenced(c.ds, "ledger") != 0 {
		t.Fatal("setup: the name must be on the standby with the old primary fenced")
	}
	// The old primary restarts as a primary: a split brain. The name stays.
	see(c.b, 2, t0.Add(time.Second), abc, "primary", "primary")
	if d := c.decide(t0.Add(time.Second)); len(d) != 0 || !c.onStandby() {
		t.Fatalf("the name must stay on the new primary: %v", d)
	}
	a := Alarms(c.snap, c.ds, c.b, t0.Add(time.Second))
	if len(a) != 1 || a[0].Kind != "split_brain" || !strings.Contains(a[0].Message, "10.0.1.4:5432") {
		t.Fatalf("the split brain must be reported: %v", a)
	}
	// Now the new primary dies: the fenced one is still never routed to,
	// and promote auto does not touch it either.
	see(c.b, 3, t0.Add(2*time.Second), abc, "primary", "down")
	for s := 2; s < 30; s++ {
		if d := c.decide(t0.Add(time.Duration(s) * time.Second)); len(d) != 0 || !c.onStandby() {
			t.Fatalf("a fenced backend must never get the name back by itself: %v", d)
		}
	}
	a = Alarms(c.snap, c.ds, c.b, t0.Add(30*time.Second))
	if len(a) != 1 || a[0].Kind != "fenced_primary" {
		t.Fatalf("the fenced primary must be reported: %v", a)
	}
	// Rebuilt as a standby, it is unfenced; with the other side down, pgplane
	// promotes it, and the name fails back.
	// The other side has been down longer than the grace, so the promotion
	// comes at once.
	see(c.b, 4, t0.Add(31*time.Second), abc, "standby", "down")
	d := c.decide(t0.Add(31 * time.Second))
	if keys(d) != "fence/ledger promote/ledger" || Fenced(c.ds, "ledger") != -1 || d[1].Value != 0 {
		t.Fatalf("a rebuilt standby is no longer fenced, and is promoted while the other stays down: %v", d)
	}
	see(c.b, 5, t0.Add(61*time.Second), abc, "primary", "down")
	if d := c.decide(t0.Add(61 * time.Second)); keys(d) != "server/ledger fence/ledger" || c.onStandby() || Fenced(c.ds, "ledger") != 1 {
		t.Fatalf("failback once promoted: %v", d)
	}
}

// SPEC: C6
func TestSwitchoverMovesTheNameWithoutFencing(t *testing.T) {
	c := newRoleCase(t, "{}")
	// An HA manager demotes the primary and promotes the standby.
	see(c.b, 1, t0, abc, "standby", "primary")
	if d := c.decide(t0); keys(d) != "server/ledger" || Fenced(c.ds, "ledger") != -1 {
		t.Fatalf("a switchover moves the name and fences nothing: %v", d)
	}
}

// SPEC: C6
func TestUnknownRolesMoveNothing(t *testing.T) {
	c := newRoleCase(t, "{pgplane.promote: auto}")
	// The monitoring role cannot log in anywhere: up, roles unknown.
	see(c.b, 1, t0, abc, "down", "")
	if d := c.decide(t0.Add(time.Minute)); len(d) != 0 {
		t.Fatalf("without a known role nothing moves: %v", d)
	}
}

// SPEC: C6 A2
func TestFailoverParametersChecked(t *testing.T) {
	for params, want := range map[string]string{
		"{pgplane.promote: sometimes}":                      "is not never or auto",
		"{pgplane.promote_grace: 10ms}":                     "is not a duration from 1s",
		"{pgplane.patroni_primary: x}":                      "is not a Patroni REST endpoint",
		"{pgplane.patroni_primary: 'http://10.0.1.4:8008'}": "go together",
		"{pgplane.promote: auto, pgplane.patroni_primary: 'http://10.0.1.4:8008', pgplane.patroni_standby: 'http://10.0.1.5:8008'}": "Patroni promotes its own standbys",
	} {
		_, _, err := topology.Parse("t.yaml", []byte(strings.Replace(rolesTopology, "PARAMS", params, 1)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want an error with %q, got %v", params, want, err)
		}
	}
	_, _, err := topology.Parse("t.yaml", []byte(strings.Replace(strings.Replace(rolesTopology, "highAvailability: true", "highAvailability: false", 1),
		"PARAMS", "{pgplane.promote: auto}", 1)))
	if err == nil || !strings.Contains(err.Error(), "high-availability servers only") {
		t.Errorf("promote on a server without HA: %v", err)
	}
}

// SPEC: T1 C4
func TestRegionWithOnlyAPrimaryAddressSaysSo(t *testing.T) {
	topo, _, err := topology.Parse("t.yaml", []byte(`regions:
  - {name: brazilsouth, gateways: [10.9.0.1]}
servers:
  - {name: sp-db, region: brazilsouth, access: public, backends: {primary: "10.0.1.4:5432"}}
`))
	if err != nil {
		t.Fatalf("a region with a primary address only must load: %v", err)
	}
	s, err := topology.NewSnapshot(topo, topology.State{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBallot([]string{"a", "b", "c"}, time.Hour)
	gw := GatewayTarget("brazilsouth", s.Regions["brazilsouth"].Gateways[0])
	for _, n := range abc[:2] {
		b.Record(VoteSet{Node: n, Seq: 1, Down: []Target{gw}}, t0)
	}
	if d := Decide(Situation{Snapshot: s, Decisions: map[string]Decision{}, Ballot: b, Now: t0}); len(d) != 0 {
		t.Fatalf("nothing to fail over to: %v", d)
	}
	a := Alarms(s, map[string]Decision{}, b, t0)
	if len(a) != 1 || a[0].Kind != "no_failover_address" || !strings.Contains(a[0].Message, "no secondary address") {
		t.Fatalf("the region must say it has nothing to fail over to: %v", a)
	}
}

// SPEC: C6 C3
func TestANodeWithoutRolesDefersToTheOthers(t *testing.T) {
	c := newRoleCase(t, "{}")
	// The others see the primary down and the standby in recovery; this
	// node has no monitoring role, so it decides by what the votes say.
	see(c.b, 1, t0, abc, "down", "standby")
	d := Decide(Situation{Snapshot: c.snap, Decisions: c.ds, Ballot: c.b, Now: t0, Roles: false})
	if len(d) != 0 {
		t.Fatalf("a node without a monitoring role must not move the name to a standby in recovery: %v", d)
	}
}
