package pgplane

import (
	"fmt"
	"path/filepath"

	"github.com/pgplane/pgplane/appliance"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
)

func init() { plugin.Register("pgplane", setup) }

func setup(c *caddy.Controller) error {
	opts, err := parse(c)
	if err != nil {
		return plugin.Error("pgplane", err)
	}
	p := &PGPlane{opts: options{ttl: opts.TTL, ns: opts.Nameservers()}}
	if p.app, err = appliance.New(opts, p.publish); err != nil {
		return plugin.Error("pgplane", err)
	}
	c.OnStartup(p.app.Start)
	c.OnShutdown(func() error { p.app.Stop(); return nil })
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		p.Next = next
		return p
	})
	return nil
}

// parse reads the pgplane directive into the appliance's options; the
// properties are listed in README.md:
//
//	pgplane TOPOLOGY_FILE {
//	    PROPERTY VALUE...
//	}
//
// Each property is checked as it is read, so an error points at its line;
// the rules that tie properties together are checked at the end.
func parse(c *caddy.Controller) (appliance.Options, error) {
	var opts appliance.Options
	seen := false
	for c.Next() {
		if seen {
			return opts, c.Err("pgplane can be used once per server block")
		}
		seen = true
		args := c.RemainingArgs()
		if len(args) != 1 {
			return opts, c.ArgErr()
		}
		base := dnsserver.GetConfig(c).Root
		if file := c.File(); base == "" && file != "" {
			base, _ = filepath.Abs(filepath.Dir(file))
		}
		opts = appliance.NewOptions(args[0], base)
		for c.NextBlock() {
			if err := opts.Set(c.Val(), c.RemainingArgs()); err != nil {
				return opts, c.Err(err.Error())
			}
		}
	}
	if err := opts.Validate(); err != nil {
		return opts, c.Err(err.Error())
	}
	return opts, nil
}

// publish builds the answers of a snapshot and swaps them in: only what
// changed when the snapshot says what changed since the one served.
func (p *PGPlane) publish(s *topology.Snapshot) {
	if prev := p.answers.Load(); prev != nil && s.Change != nil && prev.snap.Serial == s.Change.From {
		p.answers.Store(prev.withServers(s, p.opts))
		return
	}
	p.answers.Store(newAnswers(s, p.opts))
}

// String describes the plugin's configuration, for logs.
func (p *PGPlane) String() string {
	return fmt.Sprintf("pgplane %s (ttl %d)", p.app.Options().Topology, p.opts.ttl)
}
