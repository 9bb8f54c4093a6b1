package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgplane/pgplane/appliance"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy/caddyfile"
)

// A Corefile is read here with caddy's own Corefile reader (the one CoreDNS
// uses: imports, snippets, environment variables), and the pgplane block's
// properties with the appliance's options, so that pgplanectl and a starting
// node read the same file alike. pgplanectl does not import CoreDNS.

// pgplaneBlock is one pgplane directive, read.
type pgplaneBlock struct {
	opts     appliance.Options
	line     int            // of the directive
	propLine map[string]int // of each property
	problems []string       // each with its file and line
}

// readCorefile returns every pgplane directive of a Corefile.
func readCorefile(path string, text string) ([]pgplaneBlock, error) {
	servers, err := caddyfile.Parse(path, strings.NewReader(text), nil)
	if err != nil {
		return nil, err
	}
	var blocks []pgplaneBlock
	for _, sb := range servers {
		tokens := sb.Tokens["pgplane"]
		if len(tokens) == 0 {
			continue
		}
		base := filepath.Dir(path)
		if root := sb.Tokens["root"]; len(root) > 1 {
			base = root[1].Text
		}
		d := caddyfile.NewDispenserTokens(path, tokens)
		blocks = append(blocks, readBlock(&d, base)...)
	}
	if len(blocks) == 0 {
		return nil, errors.New("no pgplane directive")
	}
	return blocks, nil
}

// readBlock reads the pgplane directives of one server block as the plugin's
// setup does, keeping every problem rather than stopping at the first.
func readBlock(d *caddyfile.Dispenser, base string) []pgplaneBlock {
	var blocks []pgplaneBlock
	for d.Next() {
		b := pgplaneBlock{line: d.Line(), propLine: map[string]int{}}
		at := func(line int) string { return fmt.Sprintf("%s:%d: ", d.File(), line) }
		topologyFile := ""
		if args := d.RemainingArgs(); len(args) == 1 {
			topologyFile = args[0]
		}
		b.opts = appliance.NewOptions(topologyFile, base) // without one, Validate says so
		for d.NextBlock() {
			name, line := d.Val(), d.Line()
			b.propLine[name] = line
			if err := b.opts.Set(name, d.RemainingArgs()); err != nil {
				b.problems = append(b.problems, at(line)+err.Error())
			}
		}
		lineOf := func(property string) int {
			if line, ok := b.propLine[property]; ok {
				return line
			}
			return b.line
		}
		var p appliance.Problem
		if err := b.opts.Validate(); errors.As(err, &p) {
			b.problems = append(b.problems, at(lineOf(p.Property))+p.Error())
		}
		for _, p := range b.opts.Check() {
			b.problems = append(b.problems, at(lineOf(p.Property))+p.Error())
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// checkCorefile checks a Corefile's pgplane blocks without starting
// anything: the properties and the rules that tie them together, as a
// starting node checks them; the files they name; and the topology file
// with every rule. It returns the problems, each with its file and line,
// and a summary of what it checked.
func checkCorefile(path string) (problems []string, summary []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}, nil
	}
	blocks, err := readCorefile(path, string(data))
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}, nil
	}
	for _, b := range blocks {
		problems = append(problems, b.problems...)
		o := b.opts
		topo, warnings, err := topology.Load(o.Path(o.Topology))
		var vs topology.Violations
		switch {
		case errors.As(err, &vs):
			for _, v := range vs {
				problems = append(problems, v.Error())
			}
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s:%d: topology file: %v", path, b.line, err))
		default:
			summary = append(summary, fmt.Sprintf("topology %s: %d regions, %d vnets, %d private DNS zones, %d servers",
				o.Topology, len(topo.Regions), len(topo.VNets), len(topo.PrivateDNSZones), topo.Servers.Len()))
		}
		for _, w := range warnings {
			summary = append(summary, "warning: "+w.Error())
		}
		summary = append(summary, describe(o, topo, func(format string, args ...any) {
			line, ok := b.propLine["gateway_tls"]
			if !ok {
				line = b.line
			}
			problems = append(problems, fmt.Sprintf("%s:%d: ", path, line)+fmt.Sprintf(format, args...))
		})...)
	}
	return problems, summary
}

// describe says what a node with these options runs, with warnings for what
// works but is unwise, and checks that the gateway's certificate covers the
// names clients connect by.
func describe(o appliance.Options, topo *topology.Topology, fail func(string, ...any)) (summary []string) {
	g, c, a := o.Gateway, o.Cluster, o.Admin
	if len(g.Listen) > 0 {
		switch {
		case g.DevDir != "":
			summary = append(summary, "gateway: dev TLS (a local CA made on first start); not for production")
		case g.CertFile != "":
			checkCertificate(o.Path(g.CertFile), o.Path(g.KeyFile), topo, fail, &summary)
		}
		if g.Auth == gateway.AuthPassthrough {
			summary = append(summary, "gateway: passthrough authentication (channel binding only with backends that present the gateway's certificate)")
		} else if g.AuthRole != "" {
			summary = append(summary, "gateway: authenticates clients (SCRAM) with verifiers looked up as "+g.AuthRole)
		}
		summary = append(summary, "gateway: "+strings.Join(g.Listen, " "))
	}
	if c.Bind != "" {
		if len(c.Members) == 2 {
			summary = append(summary, "warning: two cluster members: a flip needs both; add a witness (C3)")
		}
		switch {
		case c.MonitorRole != "":
			summary = append(summary, "cluster: probes backends' roles as "+c.MonitorRole)
		case g.AuthRole != "":
			summary = append(summary, "cluster: probes backends' roles as "+g.AuthRole+" (gateway_auth_user)")
		default:
			summary = append(summary, "warning: no cluster_monitor_user or gateway_auth_user: HA servers without Patroni endpoints fail over on liveness alone (C6)")
		}
		raftBind, _ := c.RaftAddresses()
		summary = append(summary, fmt.Sprintf("cluster: node %s of %s, gossip on %s, Raft on %s", c.Name, strings.Join(c.Members, " "), c.Bind, raftBind))
	}
	if a.Listen != "" {
		if ap, err := netip.ParseAddrPort(a.Listen); err == nil && a.CertFile == "" && !ap.Addr().IsLoopback() {
			summary = append(summary, "warning: the admin API off loopback without admin_tls: the token crosses the network in the clear")
		}
		if o.State.Dir == "" {
			summary = append(summary, "warning: admin without state: the API refuses changes unless systemd sets $STATE_DIRECTORY")
		}
		summary = append(summary, "admin API: "+a.Listen)
	}
	return summary
}

// checkCertificate loads a certificate and key and checks that the
// certificate covers the names clients connect by.
func checkCertificate(certFile, keyFile string, topo *topology.Topology, fail func(string, ...any), summary *[]string) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fail("%v", err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		fail("%s: %v", certFile, err)
		return
	}
	if topo != nil {
		for _, name := range topology.CertificateNames(topo) {
			if leaf.VerifyHostname("x"+strings.TrimPrefix(name, "*")) != nil {
				fail("%s does not cover %s: clients with sslmode=verify-full will refuse it (pgplanectl certs create)", certFile, name)
			}
		}
	}
	*summary = append(*summary, fmt.Sprintf("gateway certificate %s: %s, valid until %s", certFile, strings.Join(leaf.DNSNames, " "), leaf.NotAfter.Format("2006-01-02")))
}
