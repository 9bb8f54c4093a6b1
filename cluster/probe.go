package cluster

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/topology"
)

// Probing: every round, each node probes every backend and gateway address
// of the snapshot and keeps what it saw for its votes.

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
	up bool
	// late is set when a failed probe's wait ended more than lateMargin
	// past its deadline: this process was not run on time (a starved
	// host, a stopped process), so the failure says nothing of the target.
	late    time.Duration
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
			if r.up, r.late = probe(t.addr, t.postgres, n.cfg.ProbeTimeout); r.up && t.postgres {
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
		if r.late > 0 {
			// Neither up nor down: the target's count of failures stays.
			probesTotal.WithLabelValues(targetKind(t.id), "late").Inc()
			n.cfg.Logger.Warn().Str("target", string(t.id)).Dur("late", r.late).Dur("timeout", n.cfg.ProbeTimeout).Msg("probe: this node ran late; the failed probe is not counted")
			continue
		}
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
	for name, si := range s.Servers() {
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

// lateMargin is how far past its deadline a probe's wait may end before
// the failure is put down to this process not being run on time (a
// starved host, a stopped process) rather than to the target: a wait ends
// within milliseconds of its deadline otherwise. On a starved host such
// failures made false failovers (session 9's CI).
const lateMargin = 200 * time.Millisecond

// probe connects to a target; a PostgreSQL backend must also answer an
// SSLRequest with S or N. A failure whose wait ended later than its deadline
// by more than lateMargin returns how late it ended: it says nothing of
// the target.
func probe(addr string, postgres bool, timeout time.Duration) (up bool, late time.Duration) {
	began := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false, overdue(began.Add(timeout))
	}
	defer c.Close()
	if !postgres {
		return true, 0
	}
	deadline := time.Now().Add(timeout)
	c.SetDeadline(deadline)
	if _, err := c.Write(pgwire.SSLRequest()); err != nil {
		return false, overdue(deadline)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return false, overdue(deadline)
	}
	return b[0] == 'S' || b[0] == 'N', 0
}

// overdue returns how long after deadline it is now, when that is more
// than lateMargin; else 0.
func overdue(deadline time.Time) time.Duration {
	if late := time.Since(deadline); late > lateMargin {
		return late
	}
	return 0
}
