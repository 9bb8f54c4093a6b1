// Package appliance is pgplane's engine: one node's desired state and the
// parts that serve it, without CoreDNS. It reads the topology file and
// watches it, lays the admin API's run-time changes over it, keeps them in
// the replicated store, applies the cluster's failover decisions, and
// publishes each result as an immutable topology.Snapshot. It starts and
// stops the gateway, the cluster node and the admin API.
//
// The CoreDNS plugin holds one Appliance: its setup turns Corefile tokens
// into Options, and its ServeDNS answers from the snapshots New's publish
// function receives.
package appliance

import (
	"encoding/json"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// Appliance is one pgplane node. Readers load the current snapshot with one
// atomic read; every change builds a new one and swaps it in.
type Appliance struct {
	opts    Options
	desired *desiredState
	current atomic.Pointer[topology.Snapshot]
	publish func(*topology.Snapshot)

	gateway *gateway.Gateway // nil without a gateway line
	cluster *cluster.Node    // nil without cluster_bind
	admin   *api.Server      // nil without an admin line

	devMu    sync.Mutex // serialises dev certificate renewals
	devNames []string   // the names the dev certificate in use covers

	started atomic.Bool // Start has started the gateway, cluster and admin API
	logs    zerolog.Logger
}

// NewLogger returns the structured logger of a part of the appliance: JSON
// lines on stdout at info level and above.
func NewLogger(part string) zerolog.Logger {
	return zerolog.New(os.Stdout).Level(zerolog.InfoLevel).With().Timestamp().Str("plugin", part).Logger()
}

// New checks the options, opens the state, loads the topology file and makes
// the gateway, ready to Start. publish, if not nil, receives every snapshot,
// the first one before New returns; it must not block.
func New(opts Options, publish func(*topology.Snapshot)) (*Appliance, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	a := &Appliance{opts: opts, publish: publish, logs: NewLogger("pgplane")}
	store, err := a.openStore()
	if err != nil {
		return nil, err
	}
	a.desired = &desiredState{path: opts.Path(opts.Topology), interval: opts.Reload, publish: a.swap, store: store, log: NewLogger("pgplane/topology")}
	if err := a.desired.load(); err != nil {
		return nil, err
	}
	if err := a.newGateway(); err != nil {
		return nil, err
	}
	return a, nil
}

// Options returns the options the appliance runs with.
func (a *Appliance) Options() Options { return a.opts }

// Snapshot returns the snapshot in force.
func (a *Appliance) Snapshot() *topology.Snapshot { return a.current.Load() }

// Start begins watching the topology file and starts the gateway, the
// cluster node and the admin API.
func (a *Appliance) Start() error {
	a.desired.start()
	if a.gateway != nil {
		if err := a.gateway.Start(); err != nil {
			return err
		}
	}
	if err := a.newCluster(); err != nil {
		return err
	}
	if err := a.newAdmin(); err != nil {
		return err
	}
	a.started.Store(true)
	return nil
}

// Stop stops what Start started, the admin API first and the gateway last.
func (a *Appliance) Stop() {
	if a.admin != nil {
		a.admin.Stop()
	}
	if a.cluster != nil {
		a.cluster.Stop()
	}
	a.desired.stopWatch()
	if a.gateway != nil {
		a.gateway.Stop()
	}
}

// Ready reports whether the node serves: its topology is loaded, its gateway
// (if any) and admin API (if any) have started, and its cluster node (if
// any) is in touch with another member.
func (a *Appliance) Ready() bool {
	if a.current.Load() == nil || !a.started.Load() {
		return false
	}
	return a.cluster == nil || a.cluster.Joined()
}

// Reload reads the topology file now, as the watch does when it changes. It
// returns the violations of a refused file, which leaves the snapshot in
// force.
func (a *Appliance) Reload() error { return a.desired.load() }

// Change checks a run-time change against every rule (A2), writes it to
// disk, serves it and spreads it to the other nodes. A refused change
// changes nothing; the error is topology.Violations when a rule refuses it.
func (a *Appliance) Change(changes map[string]json.RawMessage) error {
	entries, err := a.desired.change(changes)
	if a.cluster != nil {
		a.cluster.Spread(entries)
	}
	return err
}

// swap makes s the snapshot in force: the plugin's answers, the gateway's
// routes and, in dev mode, a certificate that covers every name.
func (a *Appliance) swap(s *topology.Snapshot) {
	a.current.Store(s)
	if a.publish != nil {
		a.publish(s)
	}
	if a.gateway == nil {
		return
	}
	// Dev mode: a new private zone needs a certificate that names it; the
	// files are read again only when the set of zones changed.
	if a.opts.Gateway.DevDir != "" {
		a.devMu.Lock()
		if names := topology.CertificateNames(s.Topology); !slices.Equal(names, a.devNames) {
			if cert, _, err := gateway.DevCertificates(a.opts.Path(a.opts.Gateway.DevDir), names); err != nil {
				a.logs.Error().Err(err).Msg("gateway dev TLS")
			} else {
				a.gateway.SetCertificate(cert)
				a.devNames = names
			}
		}
		a.devMu.Unlock()
	}
	if err := a.gateway.Update(s); err != nil {
		a.logs.Error().Err(err).Msg("gateway")
	}
}

// openStore opens the replicated state of run-time changes: in the state
// directory (by default systemd's $STATE_DIRECTORY), or in memory without one.
func (a *Appliance) openStore() (*cluster.Store, error) {
	dir := a.opts.State.Dir
	if dir == "" {
		dir = os.Getenv("STATE_DIRECTORY")
	} else {
		dir = a.opts.Path(dir)
	}
	c := a.opts.Cluster
	node := c.Name
	if node == "" {
		node = "local"
	}
	solo := c.Bind == "" || slices.Equal(c.Members, []string{node})
	st, err := cluster.OpenStore(cluster.StoreConfig{Node: node, Dir: dir, TombstoneTTL: a.opts.State.TombstoneTTL, Solo: solo})
	if err != nil {
		return nil, err
	}
	if dir == "" && a.opts.Admin.Listen != "" {
		a.logs.Warn().Msg("no state directory (state DIR): the admin API refuses changes, which must be written to disk before they are acknowledged")
	}
	return st, nil
}

// Health reports the node's own state for the admin API's GET /v1/health.
func (a *Appliance) Health() api.HealthView {
	h := api.HealthView{Ready: a.Ready()}
	if s := a.current.Load(); s != nil {
		t := s.Topology
		h.Topology = api.TopologyHealth{File: a.desired.path, Serial: s.Serial, Regions: len(t.Regions), VNets: len(t.VNets), Zones: len(t.PrivateDNSZones), Servers: len(t.Servers)}
	}
	if a.gateway != nil {
		h.Gateway = &api.GatewayHealth{Configured: a.opts.Gateway.Listen, Listening: a.gateway.Listening()}
	}
	if a.cluster != nil {
		st := a.cluster.Status()
		c := &api.ClusterHealth{Joined: a.cluster.Joined(), Quorum: st.Quorum, Of: len(st.Members)}
		for _, m := range st.Members {
			if m.Gossip == "alive" {
				c.Alive++
			}
		}
		h.Cluster = c
	}
	if st := a.desired.store; st != nil {
		h.State.Dir = st.Dir()
		if err := a.desired.conflictErr(); err != nil {
			h.State.Conflict = err.Error()
		}
		h.State.Entries, h.State.Tombstones = st.Counts()
	}
	return h
}

// Conflict returns why the replicated run-time changes are not served (they
// break a rule together), or nil.
func (a *Appliance) Conflict() error { return a.desired.conflictErr() }
