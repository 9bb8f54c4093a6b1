package pgplane

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// recordBlocked counts failovers whose DNS record a ReadOnly lock kept on
// the old address (D10).
var recordBlocked = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: plugin.Namespace, Subsystem: "pgplane", Name: "failover_record_blocked_total",
	Help: "HA failovers whose private DNS record a ReadOnly zone lock blocked.",
}, []string{"server"})
