package pgplane

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy"
)

// gatewayOptions are the gateway_* properties of the pgplane block.
type gatewayOptions struct {
	listen     []string
	certFile   string
	keyFile    string
	devDir     string // dev mode: a local CA and certificate, made on first start
	backendTLS gateway.BackendTLS
	backendCA  string
	maxConns   int
	perSource  int
	poolSize   int // -1: off
	poolIdle   time.Duration
	handshake  time.Duration
	trusted    []netip.Prefix
	nodeID     uint8
	auth       gateway.AuthMode
	authRole   string
	authFile   string
	authDB     string
	authCache  time.Duration
}

// parseGatewayProperty reads one gateway property; it reports false when
// the property is not a gateway one.
func parseGatewayProperty(c *caddy.Controller, o *gatewayOptions) (bool, error) {
	name := c.Val()
	switch name {
	case "gateway", "gateway_tls", "gateway_backend_tls", "gateway_max_connections", "gateway_max_connections_per_source", "gateway_pool_size", "gateway_pool_idle_timeout", "gateway_handshake_timeout", "gateway_trusted_proxies", "node_id",
		"gateway_auth", "gateway_auth_user", "gateway_auth_cache":
	default:
		return false, nil
	}
	args := c.RemainingArgs()
	switch name {
	case "gateway":
		if len(args) == 0 {
			return true, c.ArgErr()
		}
		for _, a := range args {
			if _, err := netip.ParseAddrPort(a); err != nil {
				return true, c.Errf("gateway %q: want IP:port", a)
			}
		}
		o.listen = append(o.listen, args...)
	case "gateway_tls":
		switch {
		case len(args) == 2 && args[0] == "dev":
			o.devDir = args[1]
		case len(args) == 2:
			o.certFile, o.keyFile = args[0], args[1]
		default:
			return true, c.Errf("gateway_tls: want CERT_FILE KEY_FILE, or dev DIR")
		}
	case "gateway_backend_tls":
		switch {
		case len(args) == 1 && (args[0] == string(gateway.BackendTLSRequire) || args[0] == string(gateway.BackendTLSDisable)):
			o.backendTLS = gateway.BackendTLS(args[0])
		case len(args) == 2 && args[0] == string(gateway.BackendTLSVerifyFull):
			o.backendTLS, o.backendCA = gateway.BackendTLSVerifyFull, args[1]
		default:
			return true, c.Errf("gateway_backend_tls: want require, disable, or verify-full CA_FILE")
		}
	case "gateway_max_connections":
		n, err := strconv.Atoi(oneArg(args))
		if err != nil || n < 1 {
			return true, c.Errf("gateway_max_connections: want a positive number")
		}
		o.maxConns = n
	case "gateway_max_connections_per_source":
		n, err := strconv.Atoi(oneArg(args))
		if err != nil || n < 1 {
			return true, c.Errf("gateway_max_connections_per_source: want a positive number")
		}
		o.perSource = n
	case "gateway_pool_size":
		n, err := strconv.Atoi(oneArg(args))
		if err != nil || n < 0 {
			return true, c.Errf("gateway_pool_size: want a number of connections per server, 0 for no pooling")
		}
		if o.poolSize = n; n == 0 {
			o.poolSize = -1
		}
	case "gateway_pool_idle_timeout":
		d, err := time.ParseDuration(oneArg(args))
		if err != nil || d <= 0 {
			return true, c.Errf("gateway_pool_idle_timeout: want a duration such as 1m")
		}
		o.poolIdle = d
	case "gateway_handshake_timeout":
		d, err := time.ParseDuration(oneArg(args))
		if err != nil || d <= 0 {
			return true, c.Errf("gateway_handshake_timeout: want a duration such as 10s")
		}
		o.handshake = d
	case "gateway_trusted_proxies":
		if len(args) == 0 {
			return true, c.ArgErr()
		}
		for _, a := range args {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return true, c.Errf("gateway_trusted_proxies %q: want a CIDR", a)
			}
			o.trusted = append(o.trusted, p)
		}
	case "gateway_auth":
		switch m := gateway.AuthMode(oneArg(args)); m {
		case gateway.AuthTerminate, gateway.AuthPassthrough:
			o.auth = m
		default:
			return true, c.Errf("gateway_auth: want terminate or passthrough")
		}
	case "gateway_auth_user":
		var err error
		if o.authRole, o.authFile, o.authDB, err = roleLogin(name, args); err != nil {
			return true, c.Err(err.Error())
		}
	case "gateway_auth_cache":
		d, err := time.ParseDuration(oneArg(args))
		if err != nil || d <= 0 {
			return true, c.Errf("gateway_auth_cache: want a duration such as 1m")
		}
		o.authCache = d
	case "node_id":
		n, err := strconv.Atoi(oneArg(args))
		if err != nil || n < 0 || n > 127 {
			return true, c.Errf("node_id: want a number from 0 to 127")
		}
		o.nodeID = uint8(n)
	}
	return true, nil
}

// roleLogin reads the ROLE PASSWORD_FILE [DATABASE] of a directive
// (gateway_auth_user, cluster_monitor_user).
func roleLogin(directive string, args []string) (role, passfile, database string, err error) {
	if len(args) < 2 || len(args) > 3 {
		return "", "", "", fmt.Errorf("%s: want ROLE PASSWORD_FILE [DATABASE]", directive)
	}
	if problem := topology.ParameterProblem(topology.ParamAuthRole, args[0]); problem != "" {
		return "", "", "", fmt.Errorf("%s: %s", directive, problem)
	}
	if len(args) == 3 {
		database = args[2]
	}
	return args[0], args[1], database, nil
}

func oneArg(args []string) string {
	if len(args) != 1 {
		return ""
	}
	return args[0]
}

// newGateway makes the gateway of the configuration, or nil when the block
// has no gateway line.
func (p *PGPlane) newGateway(o gatewayOptions, base string, snap *topology.Snapshot) error {
	if len(o.listen) == 0 {
		return nil
	}
	cfg := gateway.Config{
		Listen: o.listen, NodeID: o.nodeID, ForwardCancel: p.forwardCancel, BackendTLS: o.backendTLS, MaxConnections: o.maxConns, MaxConnectionsPerSource: o.perSource,
		PoolSize: o.poolSize, PoolIdleTimeout: o.poolIdle,
		HandshakeTimeout: o.handshake, TrustedProxies: o.trusted,
		Auth: o.auth, AuthRole: o.authRole, AuthDatabase: o.authDB, AuthCacheTTL: o.authCache,
		Logger: newLogger("pgplane/gateway"),
	}
	if o.authFile != "" {
		cfg.AuthPassfile = resolve(base, o.authFile)
		if _, err := os.Stat(cfg.AuthPassfile); err != nil {
			return fmt.Errorf("gateway_auth_user: the password file: %w", err)
		}
	}
	var cert tls.Certificate
	var err error
	switch {
	case o.devDir != "":
		o.devDir = resolve(base, o.devDir)
		var ca string
		if cert, ca, err = gateway.DevCertificates(o.devDir, certNames(snap)); err != nil {
			return err
		}
		p.devTLS, p.devNames = o.devDir, certNames(snap)
		log.Infof("gateway dev TLS: CA certificate %s; connect with: psql \"host=NAME.%s hostaddr=%s port=%s sslmode=verify-full sslrootcert=%s\"",
			ca, topology.Apex, netip.MustParseAddrPort(o.listen[0]).Addr(), strconv.Itoa(int(netip.MustParseAddrPort(o.listen[0]).Port())), ca)
	case o.certFile != "":
		if cert, err = tls.LoadX509KeyPair(resolve(base, o.certFile), resolve(base, o.keyFile)); err != nil {
			return fmt.Errorf("gateway_tls: %w", err)
		}
	}
	if len(cert.Certificate) > 0 {
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if cfg.BackendRootCAs, err = backendRoots(base, o); err != nil {
		return err
	}
	p.gateway, err = gateway.New(cfg, snap)
	return err
}

// backendRoots are the CA certificates of gateway_backend_tls verify-full,
// or nil.
func backendRoots(base string, o gatewayOptions) (*x509.CertPool, error) {
	if o.backendCA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(resolve(base, o.backendCA))
	if err != nil {
		return nil, fmt.Errorf("gateway_backend_tls: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("gateway_backend_tls: no certificate in %s", o.backendCA)
	}
	return roots, nil
}

// certNames are the names the dev certificate covers: every server's public
// name and every private zone's records.
func certNames(s *topology.Snapshot) []string { return topology.CertificateNames(s.Topology) }

func resolve(base, path string) string {
	if filepath.IsAbs(path) || base == "" {
		return path
	}
	return filepath.Join(base, path)
}
