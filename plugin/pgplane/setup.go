package pgplane

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"

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
	if err := p.topo.load(); err != nil {
		return plugin.Error("pgplane", err)
	}
	c.OnStartup(func() error { p.topo.start(); return nil })
	c.OnShutdown(func() error { p.topo.stopWatch(); return nil })
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
		path = args[0]
		if !filepath.IsAbs(path) {
			if root := dnsserver.GetConfig(c).Root; root != "" {
				path = filepath.Join(root, path)
			} else if file := c.File(); file != "" {
				path = filepath.Join(filepath.Dir(file), path)
			}
		}
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
			default:
				return nil, c.Errf("unknown property %q", c.Val())
			}
		}
	}
	if len(p.opts.ns) == 0 {
		p.opts.ns = []string{defaultNS}
	}
	p.topo = &topologyFile{path: path, interval: reload, publish: p.publish}
	return p, nil
}

// publish builds the answers of a snapshot and swaps them in.
func (p *PGPlane) publish(s *topology.Snapshot) {
	p.answers.Store(newAnswers(s, p.opts))
}

// String describes the plugin's configuration, for logs.
func (p *PGPlane) String() string {
	return fmt.Sprintf("pgplane %s (ttl %d)", p.topo.path, p.opts.ttl)
}
