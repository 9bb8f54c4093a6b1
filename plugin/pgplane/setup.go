package pgplane

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

func init() { plugin.Register("pgplane", setup) }

// Defaults of the Corefile options.
const (
	defaultTTL    = 5
	defaultReload = 2 * time.Second
	defaultNS     = "ns1.pgplane.invalid."
)

func setup(c *caddy.Controller) error {
	p, err := parse(c)
	if err != nil {
		return plugin.Error("pgplane", err)
	}
	if err := p.openStore(); err != nil {
		return plugin.Error("pgplane", err)
	}
	if err := p.topo.load(); err != nil {
		return plugin.Error("pgplane", err)
	}
	if err := p.newGateway(p.gwOpts, p.base, p.answers.Load().snap); err != nil {
		return plugin.Error("pgplane", err)
	}
	c.OnStartup(func() error {
		p.topo.start()
		if p.gateway != nil {
			if err := p.gateway.Start(); err != nil {
				return err
			}
		}
		if err := p.newCluster(p.clOpts, p.gwOpts); err != nil {
			return err
		}
		if err := p.newAdmin(p.adOpts); err != nil {
			return err
		}
		p.started.Store(true)
		return nil
	})
	c.OnShutdown(func() error {
		if p.admin != nil {
			p.admin.Stop()
		}
		if p.cluster != nil {
			p.cluster.Stop()
		}
		p.topo.stopWatch()
		if p.gateway != nil {
			p.gateway.Stop()
		}
		return nil
	})
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		p.Next = next
		return p
	})
	return nil
}

// parse reads the pgplane directive:
//
//	pgplane TOPOLOGY_FILE {
//	    ttl SECONDS
//	    reload DURATION
//	    ns NAME...
//	    gateway ADDRESS:PORT...
//	    gateway_tls CERT_FILE KEY_FILE | dev DIR
//	    gateway_backend_tls require | disable | verify-full CA_FILE
//	    gateway_auth terminate | passthrough
//	    gateway_auth_user ROLE PASSWORD_FILE [DATABASE]
//	    gateway_auth_cache DURATION
//	    gateway_max_connections N
//	    gateway_max_connections_per_source N
//	    gateway_pool_size N
//	    gateway_pool_idle_timeout DURATION
//	    gateway_handshake_timeout DURATION
//	    gateway_trusted_proxies CIDR...
//	    node_id N
//	    cluster_* ... (see README.md), cluster_monitor_user ROLE PASSWORD_FILE [DATABASE]
//	    admin ADDRESS:PORT
//	    admin_token_file FILE
//	    state DIR
//	    state_tombstone_ttl DURATION
//	}
func parse(c *caddy.Controller) (*PGPlane, error) {
	p := &PGPlane{opts: options{ttl: defaultTTL}}
	reload := defaultReload
	var path string
	for c.Next() {
		if path != "" {
			return nil, c.Err("pgplane can be used once per server block")
		}
		args := c.RemainingArgs()
		if len(args) != 1 {
			return nil, c.ArgErr()
		}
		if root := dnsserver.GetConfig(c).Root; root != "" {
			p.base = root
		} else if file := c.File(); file != "" {
			p.base, _ = filepath.Abs(filepath.Dir(file))
		}
		path = resolve(p.base, args[0])
		for c.NextBlock() {
			switch c.Val() {
			case "ttl":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				ttl, err := strconv.ParseUint(args[0], 10, 32)
				if err != nil || ttl == 0 || ttl > 86400 {
					return nil, c.Errf("ttl %q: want whole seconds from 1 to 86400", args[0])
				}
				p.opts.ttl = uint32(ttl)
			case "reload":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				d, err := time.ParseDuration(args[0])
				if err != nil || d < 0 {
					return nil, c.Errf("reload %q: want a duration such as 2s, or 0 to disable", args[0])
				}
				reload = d
			case "ns":
				args := c.RemainingArgs()
				if len(args) == 0 {
					return nil, c.ArgErr()
				}
				for _, n := range args {
					if _, ok := dns.IsDomainName(n); !ok {
						return nil, c.Errf("ns %q is not a domain name", n)
					}
					p.opts.ns = append(p.opts.ns, dns.Fqdn(n))
				}
			case "state":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				p.stOpts.dir = args[0]
			case "state_tombstone_ttl":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				d, err := time.ParseDuration(args[0])
				if err != nil || d < time.Minute {
					return nil, c.Errf("state_tombstone_ttl %q: want a duration of at least 1m, such as 24h", args[0])
				}
				p.stOpts.tombstoneTTL = d
			default:
				ok, err := parseGatewayProperty(c, &p.gwOpts)
				if !ok && err == nil {
					ok, err = parseClusterProperty(c, &p.clOpts)
				}
				if !ok && err == nil {
					ok, err = parseAdminProperty(c, &p.adOpts)
				}
				if err != nil {
					return nil, err
				}
				if !ok {
					return nil, c.Errf("unknown property %q", c.Val())
				}
			}
		}
	}
	if len(p.opts.ns) == 0 {
		p.opts.ns = []string{defaultNS}
	}
	if p.gwOpts.devDir == "" && p.gwOpts.certFile == "" && len(p.gwOpts.listen) > 0 {
		return nil, c.Errf("gateway needs gateway_tls CERT_FILE KEY_FILE (or gateway_tls dev DIR for development)")
	}
	p.topo = &topologyFile{path: path, interval: reload, publish: p.publish}
	return p, nil
}

// stateOptions are the state properties of the pgplane block.
type stateOptions struct {
	dir          string
	tombstoneTTL time.Duration
}

// openStore opens the replicated state of run-time changes: in the state
// directory (by default systemd's $STATE_DIRECTORY), or in memory without one.
func (p *PGPlane) openStore() error {
	dir := p.stOpts.dir
	if dir == "" {
		dir = os.Getenv("STATE_DIRECTORY")
	} else {
		dir = resolve(p.base, dir)
	}
	node := p.clOpts.name
	if node == "" {
		node = "local"
	}
	solo := p.clOpts.bind == "" || slices.Equal(p.clOpts.members, []string{node})
	st, err := cluster.OpenStore(cluster.StoreConfig{Node: node, Dir: dir, TombstoneTTL: p.stOpts.tombstoneTTL, Solo: solo})
	if err != nil {
		return err
	}
	if dir == "" && p.adOpts.listen != "" {
		log.Warningf("no state directory (state DIR): the admin API refuses changes, which must be written to disk before they are acknowledged")
	}
	p.topo.store = st
	return nil
}

// change applies a run-time change from the admin API on this node and
// spreads it to the others.
func (p *PGPlane) change(changes map[string]json.RawMessage) error {
	entries, err := p.topo.change(changes)
	if p.cluster != nil {
		p.cluster.Spread(entries)
	}
	return err
}

// publish builds the answers of a snapshot and swaps them in, and hands the
// snapshot to the gateway.
func (p *PGPlane) publish(s *topology.Snapshot) {
	p.answers.Store(newAnswers(s, p.opts))
	if p.gateway == nil {
		return
	}
	// Dev mode: a new private zone needs a certificate that names it; the
	// files are read again only when the set of zones changed.
	if names := certNames(s); p.devTLS != "" && !slices.Equal(names, p.devNames) {
		if cert, _, err := gateway.DevCertificates(p.devTLS, names); err != nil {
			log.Errorf("gateway dev TLS: %v", err)
		} else {
			p.gateway.SetCertificate(cert)
			p.devNames = names
		}
	}
	if err := p.gateway.Update(s); err != nil {
		log.Errorf("gateway: %v", err)
	}
}

// String describes the plugin's configuration, for logs.
func (p *PGPlane) String() string {
	return fmt.Sprintf("pgplane %s (ttl %d)", p.topo.path, p.opts.ttl)
}
