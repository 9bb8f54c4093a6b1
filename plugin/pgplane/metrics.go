package pgplane

import (
	"github.com/miekg/dns"

	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

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
