package appliance

import (
	"crypto/tls"
	"net/netip"
	"strconv"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"
)

// newGateway makes the gateway, or nothing without a gateway line.
func (a *Appliance) newGateway() error {
	o := a.opts.Gateway
	if len(o.Listen) == 0 {
		return nil
	}
	snap := a.current.Load()
	cfg := gateway.Config{
		Listen: o.Listen, NodeID: o.NodeID, ForwardCancel: a.forwardCancel, BackendTLS: o.BackendTLS,
		MaxConnections: o.MaxConnections, MaxConnectionsPerSource: o.PerSource,
		PoolSize: o.PoolSize, PoolIdleTimeout: o.PoolIdle, RelayThreads: o.RelayThreads,
		HandshakeTimeout: o.Handshake, TrustedProxies: o.TrustedProxies,
		Auth: o.Auth, AuthRole: o.AuthRole, AuthDatabase: o.AuthDB, AuthCacheTTL: o.AuthCache,
		Logger: NewLogger("pgplane/gateway"),
	}
	var err error
	if o.AuthFile != "" {
		if cfg.AuthPassfile, err = a.opts.passfile("gateway_auth_user", o.AuthFile); err != nil {
			return err
		}
	}
	var cert tls.Certificate
	switch {
	case o.DevDir != "":
		names := topology.CertificateNames(snap.Topology)
		var ca string
		if cert, ca, err = gateway.DevCertificates(a.opts.Path(o.DevDir), names); err != nil {
			return err
		}
		a.devNames = names
		listen := netip.MustParseAddrPort(o.Listen[0])
		a.logs.Info().Msgf("gateway dev TLS: CA certificate %s; connect with: psql \"host=NAME.%s hostaddr=%s port=%s sslmode=verify-full sslrootcert=%s\"",
			ca, topology.Apex, listen.Addr(), strconv.Itoa(int(listen.Port())), ca)
	case o.CertFile != "":
		if cert, err = a.opts.gatewayCertificate(); err != nil {
			return err
		}
	}
	if len(cert.Certificate) > 0 {
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if cfg.BackendRootCAs, err = a.opts.backendRoots(); err != nil {
		return err
	}
	a.gateway, err = gateway.New(cfg, snap)
	return err
}

// forwardCancel hands a cancel key of another node to the cluster (G2a).
func (a *Appliance) forwardCancel(node uint8, pid, secret uint32) bool {
	if a.cluster == nil {
		return false
	}
	return a.cluster.ForwardCancel(node, pid, secret)
}

// newCluster starts this node's cluster membership, or does nothing without
// a cluster_bind line.
func (a *Appliance) newCluster() error {
	o, g := a.opts.Cluster, a.opts.Gateway
	if o.Bind == "" {
		return nil
	}
	cfg := cluster.Config{
		Name: o.Name, Members: o.Members, Bind: o.Bind, Advertise: o.Advertise, Join: o.Join, Dev: o.Dev,
		NodeID: g.NodeID, Holds: g.Listen, ProbeInterval: o.Interval, ProbeTimeout: o.Timeout, FailAfter: o.FailAfter,
		GatewayPort: 5432,
		StateDir:    a.store.Dir(),
		RaftAddress: a.store.Address(),
		Logger:      NewLogger("pgplane/cluster").With().Str("node", o.Name).Logger(),
	}
	switch {
	case o.GatewayPort != 0:
		cfg.GatewayPort = o.GatewayPort
	case len(g.Listen) > 0:
		cfg.GatewayPort = int(netip.MustParseAddrPort(g.Listen[0]).Port())
	}
	monitor, err := a.opts.monitor()
	if err != nil {
		return err
	}
	cfg.Monitor = monitor
	if monitor == nil && hasHAServers(a.current.Load()) {
		cfg.Logger.Warn().Msg("cluster: no monitoring role (cluster_monitor_user, or gateway_auth_user): HA servers without Patroni endpoints fail over on liveness alone, and may be moved to a standby still in recovery")
	}
	if cfg.Key, err = a.opts.gossipKey(); err != nil {
		return err
	}
	n, err := cluster.New(cfg, cluster.Hooks{
		Snapshot: a.current.Load,
		Apply:    a.desired.setState,
		Cancel: func(pid, secret uint32) {
			if a.gateway != nil {
				a.gateway.Cancel(pid, secret)
			}
		},
	})
	if err != nil {
		return err
	}
	a.cluster = n
	return nil
}

func hasHAServers(s *topology.Snapshot) bool {
	for _, si := range s.Servers() {
		if si.Server.HighAvailability {
			return true
		}
	}
	return false
}

// newAdmin starts the admin API, or does nothing without an admin line.
func (a *Appliance) newAdmin() error {
	o := a.opts.Admin
	if o.Listen == "" {
		return nil
	}
	cfg := api.Config{
		Listen:   o.Listen,
		Snapshot: a.current.Load,
		Desired:  api.DesiredFunc(a.Change),
		Health:   a.Health,
		Logger:   NewLogger("pgplane/admin"),
	}
	if a.cluster != nil {
		cfg.Cluster = a.cluster
	}
	var err error
	if cfg.Token, err = a.opts.adminToken(); err != nil {
		return err
	}
	if cfg.TLS, err = a.opts.adminTLS(); err != nil {
		return err
	}
	s, err := api.New(cfg)
	if err != nil {
		return err
	}
	a.admin = s
	return s.Start()
}
