package pgplane

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy"
)

// clusterOptions are the cluster_* properties of the pgplane block.
type clusterOptions struct {
	name      string
	members   []string
	bind      string
	advertise string
	join      []string
	keyFile   string
	dev       bool
	interval  time.Duration
	timeout   time.Duration
	failAfter int
	gwPort    int
	// monitor: the role backends' roles are probed with (C6); by default
	// the gateway's auth role.
	monitorRole, monitorFile, monitorDB string
}

// parseClusterProperty reads one cluster property; it reports false when
// the property is not a cluster one.
func parseClusterProperty(c *caddy.Controller, o *clusterOptions) (bool, error) {
	name := c.Val()
	if !strings.HasPrefix(name, "cluster_") {
		return false, nil
	}
	args := c.RemainingArgs()
	var err error
	switch name {
	case "cluster_name":
		o.name = oneArg(args)
	case "cluster_members":
		o.members = args
	case "cluster_bind":
		o.bind = oneArg(args)
		_, err = netip.ParseAddrPort(o.bind)
	case "cluster_advertise":
		o.advertise = oneArg(args)
		_, err = netip.ParseAddrPort(o.advertise)
	case "cluster_join":
		o.join = args
	case "cluster_key_file":
		o.keyFile = oneArg(args)
	case "cluster_dev":
		o.dev = len(args) == 0
		if !o.dev {
			return true, c.ArgErr()
		}
	case "cluster_probe_interval":
		o.interval, err = time.ParseDuration(oneArg(args))
	case "cluster_probe_timeout":
		o.timeout, err = time.ParseDuration(oneArg(args))
	case "cluster_fail_after":
		o.failAfter, err = strconv.Atoi(oneArg(args))
	case "cluster_gateway_port":
		o.gwPort, err = strconv.Atoi(oneArg(args))
	case "cluster_monitor_user":
		if o.monitorRole, o.monitorFile, o.monitorDB, err = roleLogin(name, args); err != nil {
			return true, c.Err(err.Error())
		}
	default:
		return true, c.Errf("unknown property %q", name)
	}
	if err != nil || (len(args) == 0 && name != "cluster_dev") {
		return true, c.Errf("%s %s: %v", name, strings.Join(args, " "), errOr(err, "a value is required"))
	}
	return true, nil
}

func errOr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}

// newCluster starts this node's cluster membership, or does nothing without
// a cluster_bind line.
func (p *PGPlane) newCluster(o clusterOptions, g gatewayOptions) error {
	if o.bind == "" {
		return nil
	}
	if o.name == "" || len(o.members) == 0 {
		return fmt.Errorf("cluster: cluster_name and cluster_members are required with cluster_bind")
	}
	cfg := cluster.Config{
		Name: o.name, Members: o.members, Bind: o.bind, Advertise: o.advertise, Join: o.join, Dev: o.dev,
		NodeID: g.nodeID, Holds: g.listen, ProbeInterval: o.interval, ProbeTimeout: o.timeout, FailAfter: o.failAfter,
		GatewayPort: 5432,
		StateDir:    p.topo.store.Dir(),
		Logger:      newLogger("pgplane/cluster").With().Str("node", o.name).Logger(),
	}
	switch {
	case o.gwPort != 0:
		cfg.GatewayPort = o.gwPort
	case len(g.listen) > 0:
		cfg.GatewayPort = int(netip.MustParseAddrPort(g.listen[0]).Port())
	}
	monitor, err := p.monitor(o, g)
	if err != nil {
		return err
	}
	cfg.Monitor = monitor
	if monitor == nil && hasHAServers(p.answers.Load().snap) {
		cfg.Logger.Warn().Msg("cluster: no monitoring role (cluster_monitor_user, or gateway_auth_user): HA servers without Patroni endpoints fail over on liveness alone, and may be moved to a standby still in recovery")
	}
	if o.keyFile != "" {
		key, err := os.ReadFile(resolve(p.base, o.keyFile))
		if err != nil {
			return fmt.Errorf("cluster_key_file: %w", err)
		}
		if cfg.Key, err = cluster.DecodeKey(key); err != nil {
			return fmt.Errorf("cluster_key_file %s: %w", o.keyFile, err)
		}
	}
	n, err := cluster.New(cfg, cluster.Hooks{
		Snapshot: func() *topology.Snapshot { return p.answers.Load().snap },
		Apply:    p.topo.setState,
		Store:    p.topo.store,
		Changed:  p.topo.storeChanged,
		Cancel: func(pid, secret uint32) {
			if p.gateway != nil {
				p.gateway.Cancel(pid, secret)
			}
		},
	})
	if err != nil {
		return err
	}
	p.cluster = n
	return nil
}

// monitor is the monitoring role of cluster_monitor_user, or else of
// gateway_auth_user; nil when neither is set.
func (p *PGPlane) monitor(o clusterOptions, g gatewayOptions) (*cluster.Monitor, error) {
	m := &cluster.Monitor{User: o.monitorRole, Passfile: o.monitorFile, Database: o.monitorDB}
	directive := "cluster_monitor_user"
	if m.User == "" {
		m.User, m.Passfile, m.Database, directive = g.authRole, g.authFile, g.authDB, "gateway_auth_user"
	}
	if m.User == "" {
		return nil, nil
	}
	if m.Database == "" {
		m.Database = gateway.DefaultAuthDatabase
	}
	m.Passfile = resolve(p.base, m.Passfile)
	if _, err := os.Stat(m.Passfile); err != nil {
		return nil, fmt.Errorf("%s: the password file: %w", directive, err)
	}
	roots, err := backendRoots(p.base, g)
	if err != nil {
		return nil, err
	}
	m.TLS = func(host string) *tls.Config { return gateway.BackendTLSConfig(g.backendTLS, roots, host) }
	return m, nil
}

func hasHAServers(s *topology.Snapshot) bool {
	for _, si := range s.Servers {
		if si.Server.HighAvailability {
			return true
		}
	}
	return false
}

// forwardCancel hands a cancel key of another node to the cluster (G2a).
func (p *PGPlane) forwardCancel(node uint8, pid, secret uint32) bool {
	if p.cluster == nil {
		return false
	}
	return p.cluster.ForwardCancel(node, pid, secret)
}
