// Package appliance is pgplane's engine: one node's desired state and the
// parts that serve it, without CoreDNS. It reads the topology file and
// watches it, lays the admin API's run-time changes over it, commits them
// through Raft (package raftstate), applies the cluster's failover
// decisions, and
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
	"time"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/raftstate"
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

	store   *raftstate.Store // the run-time changes
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
	a.desired = &desiredState{path: opts.Path(opts.Topology), interval: opts.Reload, publish: a.swap, log: NewLogger("pgplane/topology")}
	if err := a.openStore(); err != nil {
		return nil, err
	}
	if err := a.desired.load(); err != nil {
		return nil, err
	}
	releaseMemory()
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
// cluster node, the Raft log of run-time changes and the admin API.
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
	var peers raftstate.Peers
	if a.cluster != nil {
		peers = a.cluster
	}
	if err := a.store.Start(peers); err != nil {
		return err
	}
	if err := a.newAdmin(); err != nil {
		return err
	}
	a.started.Store(true)
	return nil
}

// Stop stops what Start started: the admin API, Raft and the cluster node
// side by side (each waits on its own peers and requests, up to seconds
// on a loaded host, and none needs another to stop), then the file watch,
// and the gateway last, so sessions are served until the end. It logs how
// long it took.
func (a *Appliance) Stop() {
	began := time.Now()
	var wg sync.WaitGroup
	inParallel := func(stop func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop()
		}()
	}
	if a.admin != nil {
		inParallel(a.admin.Stop)
	}
	inParallel(a.store.Stop)
	if a.cluster != nil {
		inParallel(a.cluster.Stop)
	}
	wg.Wait()
	a.desired.stopWatch()
	if a.gateway != nil {
		a.gateway.Stop()
	}
	a.logs.Info().Dur("took", time.Since(began)).Msg("stopped")
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

// Change commits a run-time change through Raft: the leader checks it
// against every rule (A2) with the state every earlier change made, and it
// returns once the change is committed and served here. A refused change
// changes nothing; the error is topology.Violations when a rule refuses it,
// *raftstate.NoQuorumError without a majority.
func (a *Appliance) Change(changes map[string]json.RawMessage) error {
	return a.store.Change(changes)
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

// openStore opens the run-time changes' store: in the state directory (by
// default systemd's $STATE_DIRECTORY), or none, refusing every change,
// without one.
func (a *Appliance) openStore() error {
	dir := a.opts.State.Dir
	if dir == "" {
		dir = os.Getenv("STATE_DIRECTORY")
	} else {
		dir = a.opts.Path(dir)
	}
	c := a.opts.Cluster
	node, members := c.Name, c.Members
	if c.Bind == "" {
		node, members = "local", []string{"local"}
	}
	bind, advertise := c.RaftAddresses()
	key, err := a.opts.gossipKey()
	if err != nil {
		return err
	}
	st, err := raftstate.Open(raftstate.Config{
		Node: node, Members: members, Dir: dir, Bind: bind, Advertise: advertise, Key: key,
		Check: a.desired.check, Defined: a.desired.defined, Applied: a.desired.applied,
		Logger: NewLogger("pgplane/state").With().Str("node", node).Logger(),
	})
	if err != nil {
		return err
	}
	switch {
	case dir == "" && c.Bind != "":
		a.logs.Warn().Msgf("no state directory (state DIR): member %s takes no part in committing run-time changes (Raft), so the other members of %v need a majority without it, and its admin API refuses changes", c.Name, c.Members)
	case dir == "" && a.opts.Admin.Listen != "":
		a.logs.Warn().Msg("no state directory (state DIR): the admin API refuses changes, which must be written to disk before they are acknowledged")
	}
	if a.opts.State.TombstoneTTL != 0 {
		a.logs.Warn().Msg("state_tombstone_ttl has no effect: run-time changes are committed through Raft, whose snapshots replaced tombstones; remove the line")
	}
	a.store = st
	a.desired.store = st
	return nil
}

// Health reports the node's own state for the admin API's GET /v1/health.
func (a *Appliance) Health() api.HealthView {
	h := api.HealthView{Ready: a.Ready()}
	if s := a.current.Load(); s != nil {
		t := s.Topology
		h.Topology = api.TopologyHealth{File: a.desired.path, Serial: s.Serial, Regions: len(t.Regions), VNets: len(t.VNets), Zones: len(t.PrivateDNSZones), Servers: t.Servers.Len()}
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
	st := a.store.Status()
	h.State = api.StateHealth{Dir: a.store.Dir(), Entries: st.Entries, Raft: st.State, Leader: st.Leader, Term: st.Term, Applied: st.Applied, LastContact: st.LastSeen, Stopped: st.Stopped}
	if err := a.desired.conflictErr(); err != nil {
		h.State.Conflict = err.Error()
	}
	return h
}

// Conflict returns why the committed run-time changes are not served (they
// break a rule with this node's topology file), or nil.
func (a *Appliance) Conflict() error { return a.desired.conflictErr() }
