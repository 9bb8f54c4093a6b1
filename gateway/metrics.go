package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics, registered with the default registry that CoreDNS's prometheus
// plugin serves, as CoreDNS's own plugins do.
var (
	connections = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pgplane", Subsystem: "gateway", Name: "connections_total",
		Help: "Client connections by server and decision.",
	}, []string{"server", "decision"})
	handshakeSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: "pgplane", Subsystem: "gateway", Name: "tls_handshake_seconds",
		Help:    "Duration of client TLS handshakes.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
	})
	bytesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pgplane", Subsystem: "gateway", Name: "bytes_total",
		Help: "Bytes copied after the startup phase; in is client to backend.",
	}, []string{"direction"})
)
