package appliance

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"

	"github.com/miekg/dns"
)

// Defaults of the options.
const (
	DefaultTTL    = 5
	DefaultReload = 2 * time.Second
	DefaultNS     = "ns1.pgplane.invalid."
)

// Options are a node's settings: the properties of a Corefile's pgplane
// block. The plugin's setup and `pgplanectl validate --corefile` both fill
// them with Set and check them with Validate, so a Corefile means the same
// to both.
type Options struct {
	// Topology is the topology file; Base is the directory relative paths
	// start from (the Corefile's, or CoreDNS's root).
	Topology, Base string
	TTL            uint32
	Reload         time.Duration // 0: the file is not watched
	NS             []string      // fully qualified; Nameservers applies the default
	State          StateOptions
	Gateway        GatewayOptions
	Cluster        ClusterOptions
	Admin          AdminOptions
}

// StateOptions say where the run-time changes are kept.
type StateOptions struct {
	Dir string // empty: $STATE_DIRECTORY, else memory only
	// TombstoneTTL is read and ignored: Raft's snapshots replaced the
	// tombstones it bounded.
	TombstoneTTL time.Duration
}

// GatewayOptions are the gateway_* properties and node_id.
type GatewayOptions struct {
	Listen             []string
	CertFile, KeyFile  string
	DevDir             string // dev mode: a local CA and certificate, made on first start
	BackendTLS         gateway.BackendTLS
	BackendCA          string
	MaxConnections     int
	PerSource          int
	PoolSize           int // -1: no pooling, 0: the gateway's default
	PoolIdle           time.Duration
	RelayThreads       int // -1: none (goroutines copy), 0: the gateway's default
	Handshake          time.Duration
	TrustedProxies     []netip.Prefix
	NodeID             uint8
	Auth               gateway.AuthMode
	AuthRole, AuthFile string
	AuthDB             string
	AuthCache          time.Duration
}

// ClusterOptions are the cluster_* properties.
type ClusterOptions struct {
	Name      string
	Members   []string
	Bind      string
	Advertise string
	// Raft is the Raft transport's address for run-time changes (C5);
	// empty: cluster_bind's IP with the next port.
	Raft      string
	Join      []string
	KeyFile   string
	Dev       bool
	Interval  time.Duration
	Timeout   time.Duration
	FailAfter int
	// GatewayPort is the port gateway addresses are probed on; 0: the
	// first gateway line's, else 5432.
	GatewayPort int
	// The role backends' roles are probed with (C6); by default the
	// gateway's auth role.
	MonitorRole, MonitorFile, MonitorDB string
}

// AdminOptions are the admin properties.
type AdminOptions struct {
	Listen    string
	TokenFile string
	CertFile  string // with KeyFile: HTTPS
	KeyFile   string
}

// NewOptions returns the defaults for a topology file.
func NewOptions(topologyFile, base string) Options {
	return Options{Topology: topologyFile, Base: base, TTL: DefaultTTL, Reload: DefaultReload}
}

// Nameservers are the NS names of the apex: the ns property's, or
// DefaultNS.
func (o *Options) Nameservers() []string {
	if len(o.NS) == 0 {
		return []string{DefaultNS}
	}
	return o.NS
}

// Properties are the names Set knows, in the order the README lists them.
var Properties = []string{"ttl", "reload", "ns",
	"gateway", "gateway_tls", "gateway_backend_tls", "gateway_auth", "gateway_auth_user", "gateway_auth_cache",
	"gateway_max_connections", "gateway_max_connections_per_source", "gateway_pool_size", "gateway_pool_idle_timeout",
	"gateway_relay_threads", "gateway_handshake_timeout", "gateway_trusted_proxies", "node_id",
	"cluster_name", "cluster_members", "cluster_bind", "cluster_advertise", "cluster_raft", "cluster_join", "cluster_key_file",
	"cluster_dev", "cluster_probe_interval", "cluster_probe_timeout", "cluster_fail_after", "cluster_gateway_port",
	"cluster_monitor_user",
	"admin", "admin_token_file", "admin_tls", "state", "state_tombstone_ttl"}

// Set reads one property of the pgplane block. The error names the property
// and what it wants.
func (o *Options) Set(name string, args []string) error {
	if !slices.Contains(Properties, name) {
		return fmt.Errorf("unknown property %q", name)
	}
	next := *o // a refused value changes nothing
	if err := next.set(name, args); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(append([]string{name}, args...), " "), err)
	}
	*o = next
	return nil
}

// errOneValue and the like say how many values a property wants.
var (
	errOneValue = errors.New("want one value")
	errValues   = errors.New("want one or more values")
	errNoValue  = errors.New("takes no value")
)

func (o *Options) set(name string, args []string) error {
	g, c, a := &o.Gateway, &o.Cluster, &o.Admin
	switch name {
	case "ns", "gateway", "gateway_trusted_proxies", "cluster_members", "cluster_join":
		if len(args) == 0 {
			return errValues
		}
	case "cluster_dev":
		if len(args) != 0 {
			return errNoValue
		}
		c.Dev = true
		return nil
	case "gateway_tls", "gateway_backend_tls", "gateway_auth_user", "cluster_monitor_user", "admin_tls":
	default:
		if len(args) != 1 {
			return errOneValue
		}
	}
	var err error
	switch name {
	case "ttl":
		ttl, perr := strconv.ParseUint(args[0], 10, 32)
		if perr != nil || ttl == 0 || ttl > 86400 {
			return errors.New("want whole seconds from 1 to 86400")
		}
		o.TTL = uint32(ttl)
	case "reload":
		if o.Reload, err = time.ParseDuration(args[0]); err != nil || o.Reload < 0 {
			return errors.New("want a duration such as 2s, or 0 to disable")
		}
	case "ns":
		names := make([]string, 0, len(args))
		for _, n := range args {
			if _, ok := dns.IsDomainName(n); !ok {
				return fmt.Errorf("%q is not a domain name", n)
			}
			names = append(names, dns.Fqdn(n))
		}
		o.NS = append(o.NS, names...)
	case "state":
		o.State.Dir = args[0]
	case "state_tombstone_ttl":
		if o.State.TombstoneTTL, err = time.ParseDuration(args[0]); err != nil || o.State.TombstoneTTL < time.Minute {
			return errors.New("want a duration of at least 1m, such as 24h")
		}
	case "gateway":
		for _, s := range args {
			if _, err := netip.ParseAddrPort(s); err != nil {
				return fmt.Errorf("%q: want IP:port", s)
			}
		}
		g.Listen = append(g.Listen, args...)
	case "gateway_tls":
		switch {
		case len(args) == 2 && args[0] == "dev":
			g.DevDir = args[1]
		case len(args) == 2:
			g.CertFile, g.KeyFile = args[0], args[1]
		default:
			return errors.New("want CERT_FILE KEY_FILE, or dev DIR")
		}
	case "gateway_backend_tls":
		switch {
		case len(args) == 1 && (args[0] == string(gateway.BackendTLSRequire) || args[0] == string(gateway.BackendTLSDisable)):
			g.BackendTLS = gateway.BackendTLS(args[0])
		case len(args) == 2 && args[0] == string(gateway.BackendTLSVerifyFull):
			g.BackendTLS, g.BackendCA = gateway.BackendTLSVerifyFull, args[1]
		default:
			return errors.New("want require, disable, or verify-full CA_FILE")
		}
	case "gateway_auth":
		switch m := gateway.AuthMode(args[0]); m {
		case gateway.AuthTerminate, gateway.AuthPassthrough:
			g.Auth = m
		default:
			return errors.New("want terminate or passthrough")
		}
	case "gateway_auth_user":
		g.AuthRole, g.AuthFile, g.AuthDB, err = roleLogin(args)
	case "gateway_auth_cache":
		g.AuthCache, err = positiveDuration(args[0], "1m")
	case "gateway_max_connections":
		g.MaxConnections, err = positive(args[0])
	case "gateway_max_connections_per_source":
		g.PerSource, err = positive(args[0])
	case "gateway_pool_size":
		n, perr := strconv.Atoi(args[0])
		if perr != nil || n < 0 {
			return errors.New("want a number of connections per server, 0 for no pooling")
		}
		if g.PoolSize = n; n == 0 {
			g.PoolSize = -1
		}
	case "gateway_relay_threads":
		n, perr := strconv.Atoi(args[0])
		if perr != nil || n < 0 || n > 256 {
			return errors.New("want a number of threads from 1 to 256, 0 to copy with goroutines")
		}
		if g.RelayThreads = n; n == 0 {
			g.RelayThreads = -1
		}
	case "gateway_pool_idle_timeout":
		g.PoolIdle, err = positiveDuration(args[0], "1m")
	case "gateway_handshake_timeout":
		g.Handshake, err = positiveDuration(args[0], "10s")
	case "gateway_trusted_proxies":
		prefixes := make([]netip.Prefix, 0, len(args))
		for _, s := range args {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return fmt.Errorf("%q: want a CIDR", s)
			}
			prefixes = append(prefixes, p)
		}
		g.TrustedProxies = append(g.TrustedProxies, prefixes...)
	case "node_id":
		n, perr := strconv.Atoi(args[0])
		if perr != nil || n < 0 || n > 127 {
			return errors.New("want a number from 0 to 127")
		}
		g.NodeID = uint8(n)
	case "cluster_name":
		c.Name = args[0]
	case "cluster_members":
		c.Members = args
	case "cluster_bind":
		c.Bind, err = args[0], addrPort(args[0])
	case "cluster_advertise":
		c.Advertise, err = args[0], addrPort(args[0])
	case "cluster_raft":
		c.Raft, err = args[0], addrPort(args[0])
	case "cluster_join":
		c.Join = args
	case "cluster_key_file":
		c.KeyFile = args[0]
	case "cluster_probe_interval":
		c.Interval, err = positiveDuration(args[0], "1s")
	case "cluster_probe_timeout":
		c.Timeout, err = positiveDuration(args[0], "500ms")
	case "cluster_fail_after":
		c.FailAfter, err = positive(args[0])
	case "cluster_gateway_port":
		c.GatewayPort, err = strconv.Atoi(args[0])
		if err != nil || c.GatewayPort < 1 || c.GatewayPort > 65535 {
			return errors.New("want a port from 1 to 65535")
		}
	case "cluster_monitor_user":
		c.MonitorRole, c.MonitorFile, c.MonitorDB, err = roleLogin(args)
	case "admin":
		a.Listen, err = args[0], addrPort(args[0])
	case "admin_token_file":
		a.TokenFile = args[0]
	case "admin_tls":
		if len(args) != 2 {
			return errors.New("want CERT_FILE KEY_FILE")
		}
		a.CertFile, a.KeyFile = args[0], args[1]
	}
	return err
}

// Validate checks the rules that tie properties together, the ones a node
// refuses to start without. It reads no file. Its error is a Problem that
// names the property the rule is about.
func (o *Options) Validate() error {
	g, c, a := o.Gateway, o.Cluster, o.Admin
	problem := func(property, msg string) error { return Problem{property, errors.New(msg)} }
	if o.Topology == "" {
		return problem("pgplane", "pgplane takes one argument, the topology file")
	}
	if len(g.Listen) > 0 && g.DevDir == "" && g.CertFile == "" {
		return problem("gateway", "gateway needs gateway_tls CERT_FILE KEY_FILE (or gateway_tls dev DIR for development)")
	}
	if len(g.Listen) > 0 && g.Auth != gateway.AuthPassthrough && g.AuthRole == "" {
		return problem("gateway", "gateway_auth terminate (the default) needs gateway_auth_user ROLE PASSWORD_FILE, the role that looks up password verifiers on the backends, or gateway_auth passthrough")
	}
	if c.Bind != "" {
		if c.Name == "" || len(c.Members) == 0 {
			return problem("cluster_bind", "cluster_bind needs cluster_name and cluster_members")
		}
		if !slices.Contains(c.Members, c.Name) {
			return problem("cluster_name", fmt.Sprintf("cluster_name %q must be one of cluster_members %v", c.Name, c.Members))
		}
		if c.Raft == "" && strings.HasSuffix(c.Bind, ":65535") {
			return problem("cluster_raft", "cluster_bind uses port 65535: give Raft a port with cluster_raft IP:PORT")
		}
		if c.Raft != "" && c.Raft == c.Bind {
			return problem("cluster_raft", fmt.Sprintf("cluster_raft %s is cluster_bind's address: Raft needs a port of its own", c.Raft))
		}
		if c.KeyFile == "" && !c.Dev {
			return problem("cluster_bind", "gossip needs an encryption key: cluster_key_file FILE (pgplanectl cluster-key > FILE); only cluster_dev runs without one (C1)")
		}
	}
	if a.Listen != "" && a.TokenFile == "" && !netip.MustParseAddrPort(a.Listen).Addr().IsLoopback() {
		return problem("admin", fmt.Sprintf("the admin API on %s needs admin_token_file: only a loopback address may go without a token (A1)", a.Listen))
	}
	return nil
}

// roleLogin reads ROLE PASSWORD_FILE [DATABASE] (gateway_auth_user,
// cluster_monitor_user).
func roleLogin(args []string) (role, passfile, database string, err error) {
	if len(args) < 2 || len(args) > 3 {
		return "", "", "", errors.New("want ROLE PASSWORD_FILE [DATABASE]")
	}
	if problem := topology.ParameterProblem(topology.ParamAuthRole, args[0]); problem != "" {
		return "", "", "", errors.New(problem)
	}
	if len(args) == 3 {
		database = args[2]
	}
	return args[0], args[1], database, nil
}

func positive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errors.New("want a positive number")
	}
	return n, nil
}

func positiveDuration(s, example string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a duration such as %s", example)
	}
	return d, nil
}

func addrPort(s string) error {
	if _, err := netip.ParseAddrPort(s); err != nil {
		return errors.New("want IP:port")
	}
	return nil
}

// RaftAddresses returns the Raft transport's bind and advertise addresses:
// cluster_raft, else cluster_bind's IP with the next port; advertised at
// cluster_advertise's IP when there is one. Both are empty without
// cluster_bind.
func (c ClusterOptions) RaftAddresses() (bind, advertise string) {
	if c.Bind == "" {
		return "", ""
	}
	gossip := netip.MustParseAddrPort(c.Bind)
	raftBind := netip.AddrPortFrom(gossip.Addr(), gossip.Port()+1)
	if c.Raft != "" {
		raftBind = netip.MustParseAddrPort(c.Raft)
	}
	if c.Advertise == "" {
		return raftBind.String(), ""
	}
	adv := netip.MustParseAddrPort(c.Advertise)
	return raftBind.String(), netip.AddrPortFrom(adv.Addr(), raftBind.Port()).String()
}
