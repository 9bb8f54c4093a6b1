package pgplane

// Ready implements the readiness interface of CoreDNS's ready plugin: the
// node is ready once its topology is loaded, its gateway (if it has one) has
// started, its admin API (if it has one) listens, and its cluster node (if
// it has one) is in touch with another member. `ready` answers 503 and names
// pgplane until then; `health` reports only that the process is alive.
func (p *PGPlane) Ready() bool { return p.app != nil && p.app.Ready() }
