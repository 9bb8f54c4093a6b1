package raftstate

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics, registered with the default registry that CoreDNS's prometheus
// plugin serves.
var (
	entries = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "state", Name: "entries",
		Help: "Run-time changes in force: overlay keys, deletions of the topology file's objects included.",
	})
	changesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pgplane", Subsystem: "state", Name: "changes_total",
		Help: "Committed run-time changes applied, taken by this member's admin API (local) or another's (peer).",
	}, []string{"origin"})
	appliedIndex = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "state", Name: "applied_index",
		Help: "The Raft index of the last run-time change applied on this member.",
	})
	leader = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: "pgplane", Subsystem: "state", Name: "leader",
		Help: "1 while this member leads the Raft cluster of run-time changes.",
	})
)
