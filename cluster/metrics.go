package cluster

import (
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics, registered with the default registry that CoreDNS's prometheus
// plugin serves.
var (
	probesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "probes_total",
		Help: "Probes of backends and gateway addresses by this node, by kind and result.",
	}, []string{"kind", "result"})
	targetUp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "target_up",
		Help: "1 while this node sees the target up, 0 once it sees it down.",
	}, []string{"target"})
	flipsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "flips_total",
		Help: "Failover decisions made by this node: kind server or region, by quorum or operator.",
	}, []string{"kind", "by"})
	backendRole = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "backend_role",
		Help: "1 for the role this node's probe last learned of a backend (primary, standby, unknown).",
	}, []string{"target", "role"})
	promotionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "promotions_total",
		Help: "Standbys this node promoted under pgplane.promote auto, by result (ok, failed).",
	}, []string{"result"})
	alarms = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "alarm",
		Help: "1 while an HA server or a region needs an operator: split_brain (both backends claim to be primary), fenced_primary, no_failover_address (a region's only gateway address is down).",
	}, []string{"object", "kind"})
	members = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "members",
		Help: "Configured members by gossip state as this node sees them: alive, suspect, dead, absent.",
	}, []string{"state"})
	healthScore = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "cluster", Name: "gossip_health_score",
		Help: "memberlist's awareness score: 0 is healthy, higher means this node is slow to process gossip.",
	})
)

// targetKind is "backend" or "gateway".
func targetKind(t Target) string {
	kind, _, _ := strings.Cut(string(t), "/")
	return kind
}

// observeProbe records one probe's result.
func observeProbe(t Target, up bool) {
	result := "down"
	if up {
		result = "up"
	}
	probesTotal.WithLabelValues(targetKind(t), result).Inc()
}

// observeRole records the role a probe learned.
func observeRole(t Target, r Role) {
	for _, role := range []Role{RolePrimary, RoleStandby, RoleUnknown} {
		v := 0.0
		if role == r {
			v = 1
		}
		backendRole.WithLabelValues(string(t), string(roleOrUnknown(role))).Set(v)
	}
}

func roleOrUnknown(r Role) Role {
	if r == RoleUnknown {
		return "unknown"
	}
	return r
}

// observeGossip records the members' states and memberlist's health.
func (n *Node) observeGossip() {
	counts := map[string]float64{"alive": 0, "suspect": 0, "dead": 0, "absent": 0}
	seen := map[string]bool{}
	for _, m := range n.ml.Members() {
		if !contains(n.cfg.Members, m.Name) {
			continue
		}
		seen[m.Name] = true
		switch m.State {
		case memberlist.StateAlive:
			counts["alive"]++
		case memberlist.StateSuspect:
			counts["suspect"]++
		default:
			counts["dead"]++
		}
	}
	counts["absent"] = float64(len(n.cfg.Members) - len(seen))
	for state, c := range counts {
		members.WithLabelValues(state).Set(c)
	}
	healthScore.Set(float64(n.ml.GetHealthScore()))
}
