package pgplane

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgplane/pgplane/cluster"
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

// forwardCancel hands a cancel key of another node to the cluster (G2a).
func (p *PGPlane) forwardCancel(node uint8, pid, secret uint32) bool {
	if p.cluster == nil {
		return false
	}
	return p.cluster.ForwardCancel(node, pid, secret)
}
