package appliance

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The metrics keep the names they had when the engine lived in the CoreDNS
// plugin (coredns_pgplane_*), so dashboards and alerts carry over.
const (
	metricsNamespace = "coredns"
	metricsSubsystem = "pgplane"
)

// recordBlocked counts failovers whose DNS record a ReadOnly lock kept on
// the old address (D10).
var recordBlocked = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "failover_record_blocked_total",
	Help: "HA failovers whose private DNS record a ReadOnly zone lock blocked.",
}, []string{"server"})

// stateConflict is 1 while the replicated run-time changes, laid over the
// topology file, break a rule: two changes made at once on two nodes that
// each passed alone. The node keeps serving the last state that held.
var stateConflict = promauto.NewGauge(prometheus.GaugeOpts{
	Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "state_conflict",
	Help: "1 while the replicated run-time changes break a rule together and an older state is served.",
})
