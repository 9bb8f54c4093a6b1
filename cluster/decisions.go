package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pgplane/pgplane/topology"
)

// Decisions: the node that sees a quorum takes a decision, spreads it and
// keeps it on disk; an operator can take one by hand (Operate).

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
			go n.promote(snap.Server(name), d.Value == 1)
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
	for name, si := range snap.Servers() {
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
		si := snap.Server(name)
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
