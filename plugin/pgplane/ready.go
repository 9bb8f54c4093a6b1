package pgplane

import "github.com/pgplane/pgplane/api"

// Ready implements the readiness interface of CoreDNS's ready plugin: the
// node is ready once its topology is loaded, its gateway (if it has one) has
// started, its admin API (if it has one) listens, and its cluster node (if
// it has one) is in touch with another member. `ready` answers 503 and names
// pgplane until then; `health` reports only that the process is alive.
func (p *PGPlane) Ready() bool {
	if p.answers.Load() == nil || !p.started.Load() {
		return false
	}
	return p.cluster == nil || p.cluster.Joined()
}

// health reports the node's own state for the admin API's GET /v1/health.
func (p *PGPlane) health() api.HealthView {
	a := p.answers.Load()
	h := api.HealthView{Ready: p.Ready()}
	if a != nil {
		t := a.snap.Topology
		h.Topology = api.TopologyHealth{File: p.topo.path, Serial: a.snap.Serial, Regions: len(t.Regions), VNets: len(t.VNets), Zones: len(t.PrivateDNSZones), Servers: len(t.Servers)}
	}
	if p.gateway != nil {
		h.Gateway = &api.GatewayHealth{Configured: p.gwOpts.listen, Listening: p.gateway.Listening()}
	}
	if p.cluster != nil {
		st := p.cluster.Status()
		c := &api.ClusterHealth{Joined: p.cluster.Joined(), Quorum: st.Quorum, Of: len(st.Members)}
		for _, m := range st.Members {
			if m.Gossip == "alive" {
				c.Alive++
			}
		}
		h.Cluster = c
	}
	if p.topo.store != nil {
		h.State.Dir = p.topo.store.Dir()
		if err := p.topo.conflictErr(); err != nil {
			h.State.Conflict = err.Error()
		}
		h.State.Entries, h.State.Tombstones = p.topo.store.Counts()
	}
	return h
}
