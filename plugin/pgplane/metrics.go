package pgplane

import (
	"github.com/miekg/dns"

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

// answersTotal counts the answers pgplane gives, by the VNet view that
// asked ("public" outside every VNet) and rcode.
var answersTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: plugin.Namespace, Subsystem: "pgplane", Name: "answers_total",
	Help: "Answers for postgres.database.azure.com by view (VNet, or public) and rcode.",
}, []string{"view", "rcode"})

// viewCounters are one view's answer counters, looked up once per snapshot
// rather than once per query.
type viewCounters struct {
	noError, nxDomain prometheus.Counter
	view              string
}

// newViewCounters returns the counters of every view of a snapshot, the
// public view first.
func newViewCounters(vnets []string) []viewCounters {
	out := make([]viewCounters, 0, len(vnets)+1)
	for _, v := range append([]string{"public"}, vnets...) {
		out = append(out, viewCounters{
			noError:  answersTotal.WithLabelValues(v, "NOERROR"),
			nxDomain: answersTotal.WithLabelValues(v, "NXDOMAIN"),
			view:     v,
		})
	}
	return out
}

// count counts one answer of a view (-1 public).
func (a *answers) count(view, rcode int) {
	c := &a.counters[view+1]
	switch rcode {
	case dns.RcodeSuccess:
		c.noError.Inc()
	case dns.RcodeNameError:
		c.nxDomain.Inc()
	default:
		answersTotal.WithLabelValues(c.view, dns.RcodeToString[rcode]).Inc()
	}
}

// stateConflict is 1 while the replicated run-time changes, laid over the
// topology file, break a rule: two changes made at once on two nodes that
// each passed alone. The node keeps serving the last state that held.
var stateConflict = promauto.NewGauge(prometheus.GaugeOpts{
	Namespace: plugin.Namespace, Subsystem: "pgplane", Name: "state_conflict",
	Help: "1 while the replicated run-time changes break a rule together and an older state is served.",
})
