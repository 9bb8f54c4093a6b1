package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/topology"
)

// A Corefile is read here without CoreDNS (pgplanectl does not import it):
// tokens are words, quoted strings and braces; # starts a comment.

// token is one word of a Corefile with its line.
type token struct {
	text string
	line int
}

// lexCorefile splits a Corefile into lines of tokens.
func lexCorefile(data string) [][]token {
	var lines [][]token
	for n, raw := range strings.Split(data, "\n") {
		var line []token
		for rest := strings.TrimSpace(raw); rest != ""; rest = strings.TrimSpace(rest) {
			if rest[0] == '#' {
				break
			}
			if rest[0] == '"' {
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					end = len(rest) - 1
				}
				line = append(line, token{rest[1 : end+1], n + 1})
				rest = rest[min(end+2, len(rest)):]
				continue
			}
			end := strings.IndexAny(rest, " \t")
			if end < 0 {
				end = len(rest)
			}
			line = append(line, token{rest[:end], n + 1})
			rest = rest[end:]
		}
		if len(line) > 0 {
			lines = append(lines, line)
		}
	}
	return lines
}

// pgplaneBlock is one pgplane directive: its topology file and properties.
type pgplaneBlock struct {
	line     int
	topology string
	props    map[string][]string
	propLine map[string]int
}

// findPGPlaneBlocks returns every pgplane directive of a Corefile.
func findPGPlaneBlocks(lines [][]token) ([]pgplaneBlock, error) {
	var blocks []pgplaneBlock
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l[0].text != "pgplane" {
			continue
		}
		b := pgplaneBlock{line: l[0].line, props: map[string][]string{}, propLine: map[string]int{}}
		args := l[1:]
		open := len(args) > 0 && args[len(args)-1].text == "{"
		if open {
			args = args[:len(args)-1]
		}
		if len(args) != 1 || args[0].text == "" {
			return nil, fmt.Errorf("line %d: pgplane takes one argument, the topology file", l[0].line)
		}
		b.topology = args[0].text
		for open {
			i++
			if i >= len(lines) {
				return nil, fmt.Errorf("line %d: the pgplane block is not closed", b.line)
			}
			p := lines[i]
			if p[0].text == "}" {
				break
			}
			var vals []string
			for _, t := range p[1:] {
				vals = append(vals, t.text)
			}
			b.props[p[0].text], b.propLine[p[0].text] = vals, p[0].line
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, errors.New("no pgplane directive")
	}
	return blocks, nil
}

// knownProperties are the properties of the pgplane block (plugin/pgplane/README.md).
var knownProperties = []string{"ttl", "reload", "ns", "gateway", "gateway_tls", "gateway_backend_tls",
	"gateway_auth", "gateway_auth_user", "gateway_auth_cache",
	"gateway_max_connections", "gateway_max_connections_per_source", "gateway_pool_size", "gateway_pool_idle_timeout", "gateway_handshake_timeout", "gateway_trusted_proxies", "node_id",
	"cluster_name", "cluster_members", "cluster_bind", "cluster_advertise", "cluster_join", "cluster_key_file",
	"cluster_dev", "cluster_probe_interval", "cluster_probe_timeout", "cluster_fail_after", "cluster_gateway_port",
	"cluster_monitor_user",
	"admin", "admin_token_file", "admin_tls", "state", "state_tombstone_ttl"}

// checkCorefile checks a Corefile's pgplane blocks without starting
// anything: the topology file with every rule, the files the block names,
// and the rules a node would refuse to start with. It returns the problems,
// each with its file and line, and a summary of what it checked.
func checkCorefile(path string) (problems []string, summary []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}, nil
	}
	blocks, err := findPGPlaneBlocks(lexCorefile(string(data)))
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}, nil
	}
	base := filepath.Dir(path)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	for _, b := range blocks {
		at := func(prop string) string {
			if line, ok := b.propLine[prop]; ok {
				return fmt.Sprintf("%s:%d", path, line)
			}
			return fmt.Sprintf("%s:%d", path, b.line)
		}
		fail := func(prop, format string, args ...any) {
			problems = append(problems, at(prop)+": "+fmt.Sprintf(format, args...))
		}
		for prop := range b.props {
			if !slices.Contains(knownProperties, prop) {
				fail(prop, "unknown property %q", prop)
			}
		}
		topo, warnings, err := topology.Load(rel(b.topology))
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
				b.topology, len(topo.Regions), len(topo.VNets), len(topo.PrivateDNSZones), len(topo.Servers)))
		}
		for _, w := range warnings {
			summary = append(summary, "warning: "+w.Error())
		}
		// The gateway and its certificate.
		if gw := b.props["gateway"]; len(gw) > 0 {
			tlsArgs := b.props["gateway_tls"]
			switch {
			case len(tlsArgs) == 0:
				fail("gateway", "gateway needs gateway_tls CERT_FILE KEY_FILE (or gateway_tls dev DIR for development)")
			case tlsArgs[0] == "dev":
				summary = append(summary, "gateway: dev TLS (a local CA made on first start); not for production")
			case len(tlsArgs) == 2:
				checkCertificate(rel(tlsArgs[0]), rel(tlsArgs[1]), topo, func(format string, args ...any) { fail("gateway_tls", format, args...) }, &summary)
			default:
				fail("gateway_tls", "want CERT_FILE KEY_FILE or dev DIR")
			}
			switch mode, user := first(b.props["gateway_auth"]), b.props["gateway_auth_user"]; {
			case mode != "" && mode != "terminate" && mode != "passthrough":
				fail("gateway_auth", "gateway_auth: want terminate or passthrough")
			case mode == "passthrough":
				summary = append(summary, "gateway: passthrough authentication (channel binding only with backends that present the gateway's certificate)")
			case len(user) < 2:
				fail("gateway", "gateway_auth terminate (the default) needs gateway_auth_user ROLE PASSWORD_FILE, the role that looks up password verifiers on the backends, or gateway_auth passthrough")
			default:
				if _, err := os.ReadFile(rel(user[1])); err != nil {
					fail("gateway_auth_user", "gateway_auth_user: the password file: %v", err)
				}
				summary = append(summary, "gateway: authenticates clients (SCRAM) with verifiers looked up as "+user[0])
			}
			summary = append(summary, "gateway: "+strings.Join(gw, " "))
		}
		// The cluster: a key unless dev (C1), and a name among the members.
		if bind := b.props["cluster_bind"]; len(bind) > 0 {
			name, members := first(b.props["cluster_name"]), b.props["cluster_members"]
			if name == "" || !slices.Contains(members, name) {
				fail("cluster_bind", "cluster_name %q must be one of cluster_members %v", name, members)
			}
			_, dev := b.props["cluster_dev"]
			switch keyFile := first(b.props["cluster_key_file"]); {
			case keyFile != "":
				if text, err := os.ReadFile(rel(keyFile)); err != nil {
					fail("cluster_key_file", "cluster_key_file: %v", err)
				} else if _, err := cluster.DecodeKey(text); err != nil {
					fail("cluster_key_file", "cluster_key_file %s: %v (make one with pgplanectl cluster-key)", keyFile, err)
				}
			case !dev:
				fail("cluster_bind", "gossip needs an encryption key: cluster_key_file FILE (pgplanectl cluster-key > FILE); only cluster_dev runs without one (C1)")
			}
			if len(members) == 2 {
				summary = append(summary, "warning: two cluster members: a flip needs both; add a witness (C3)")
			}
			// Backends' roles (C6): cluster_monitor_user, else the auth role.
			switch monitor, auth := b.props["cluster_monitor_user"], b.props["gateway_auth_user"]; {
			case len(monitor) == 1 || len(monitor) > 3:
				fail("cluster_monitor_user", "cluster_monitor_user: want ROLE PASSWORD_FILE [DATABASE]")
			case len(monitor) >= 2:
				if _, err := os.ReadFile(rel(monitor[1])); err != nil {
					fail("cluster_monitor_user", "cluster_monitor_user: the password file: %v", err)
				}
				summary = append(summary, "cluster: probes backends' roles as "+monitor[0])
			case len(auth) >= 2:
				summary = append(summary, "cluster: probes backends' roles as "+auth[0]+" (gateway_auth_user)")
			default:
				summary = append(summary, "warning: no cluster_monitor_user or gateway_auth_user: HA servers without Patroni endpoints fail over on liveness alone (C6)")
			}
			summary = append(summary, fmt.Sprintf("cluster: node %s of %s, gossip on %s", name, strings.Join(members, " "), bind[0]))
		}
		// The admin API: loopback, or a token (A1).
		if admin := first(b.props["admin"]); admin != "" {
			ap, err := netip.ParseAddrPort(admin)
			tokenFile := first(b.props["admin_token_file"])
			switch {
			case err != nil:
				fail("admin", "admin %q: want IP:port", admin)
			case tokenFile == "" && !ap.Addr().IsLoopback():
				fail("admin", "the admin API on %s needs admin_token_file: only a loopback address may go without a token", admin)
			case tokenFile != "":
				if text, err := os.ReadFile(rel(tokenFile)); err != nil {
					fail("admin_token_file", "admin_token_file: %v", err)
				} else if strings.TrimSpace(string(text)) == "" {
					fail("admin_token_file", "admin_token_file %s is empty", tokenFile)
				}
			}
			if files := b.props["admin_tls"]; len(files) == 2 {
				if _, err := tls.LoadX509KeyPair(rel(files[0]), rel(files[1])); err != nil {
					fail("admin_tls", "admin_tls: %v", err)
				}
			} else if _, ok := b.props["admin_tls"]; ok {
				fail("admin_tls", "admin_tls: want CERT_FILE KEY_FILE")
			} else if err == nil && !ap.Addr().IsLoopback() {
				summary = append(summary, "warning: the admin API off loopback without admin_tls: the token crosses the network in the clear")
			}
			if first(b.props["state"]) == "" {
				summary = append(summary, "warning: admin without state: the API refuses changes unless systemd sets $STATE_DIRECTORY")
			}
			summary = append(summary, "admin API: "+admin)
		}
	}
	return problems, summary
}

func first(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return vals[0]
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
