// Package gateway is pgplane's PostgreSQL gateway: it listens on the active
// gateway addresses, terminates TLS, enforces each server's TLS policy and
// firewall rules, keeps private servers private, routes every connection to
// its server's current backend over TLS, and then copies bytes.
//
// It reads the current topology snapshot on every new connection and never
// imports CoreDNS.
package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgplane/pgplane/internal/throttle"
	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/relay"

	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// BackendTLS is how the gateway secures its connection to a backend.
type BackendTLS string

// Backend TLS modes, named after libpq's sslmode.
const (
	BackendTLSRequire    BackendTLS = "require"     // TLS, certificate not verified
	BackendTLSVerifyFull BackendTLS = "verify-full" // TLS, certificate verified against BackendRootCAs
	BackendTLSDisable    BackendTLS = "disable"     // plain TCP
)

// AuthMode is how the gateway authenticates clients (G7).
type AuthMode string

// Authentication modes.
const (
	// AuthTerminate: the gateway is the client's SCRAM server, with
	// verifiers looked up on the backend, and logs in to the backend with
	// the ClientKey recovered from the client's proof.
	AuthTerminate AuthMode = "terminate"
	// AuthPassthrough: the backend's exchange is relayed end to end.
	AuthPassthrough AuthMode = "passthrough"
)

// Config configures a Gateway.
type Config struct {
	// Listen are the host:port addresses to serve. An address whose host is
	// a region's gateway address is served only while that address is the
	// region's active one (G1); any other address is always served.
	Listen []string
	// NodeID (0 to 127) is written into every cancel key the gateway hands
	// out, so that a cancel arriving at another node can be forwarded (G2a).
	NodeID uint8
	// ForwardCancel sends a cancel request whose key names another node to
	// that node; nil drops such requests.
	ForwardCancel func(node uint8, pid, secret uint32) bool
	// TLS is the client-facing TLS configuration; its first certificate is
	// served (SetCertificate replaces it). Nil: no TLS is offered.
	TLS *tls.Config
	// BackendTLS and BackendRootCAs secure the backend leg (G7).
	BackendTLS     BackendTLS
	BackendRootCAs *x509.CertPool
	// Auth is how clients authenticate; AuthTerminate by default (G7).
	Auth AuthMode
	// AuthRole is the role verifiers are looked up with (a server's
	// pgplane.auth_role parameter overrides it), AuthDatabase the database
	// it connects to, and AuthPassfile the pgpass-format file that holds
	// its passwords. AuthCacheTTL is how long a looked-up verifier is kept.
	AuthRole, AuthDatabase, AuthPassfile string
	AuthCacheTTL                         time.Duration
	// MaxConnections caps concurrent client connections (G8).
	MaxConnections int
	// PoolSize is how many idle authenticated backend connections the
	// gateway keeps per server for reuse (session pooling, gateway_auth
	// terminate only); 0 means DefaultPoolSize, a negative size none.
	// PoolIdleTimeout is how long one is kept.
	PoolSize        int
	PoolIdleTimeout time.Duration
	// MaxConnectionsPerSource caps the connections one client address
	// holds that have not finished authenticating (G12).
	MaxConnectionsPerSource int
	// HandshakeTimeout bounds TLS and the startup packet; AuthTimeout bounds
	// the authentication exchange with the backend (G8).
	HandshakeTimeout time.Duration
	AuthTimeout      time.Duration
	DialTimeout      time.Duration
	// RelayThreads is how many epoll loops relay proxied sessions (package
	// relay); 0 means relay.DefaultLoops, a negative number none: each
	// session then copies with two goroutines of its own.
	RelayThreads int
	// TrustedProxies may send a PROXY protocol v2 header (G10).
	TrustedProxies []netip.Prefix
	Logger         zerolog.Logger
}

// Defaults of Config.
const (
	DefaultMaxConnections   = 5000
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultAuthTimeout      = 60 * time.Second
	DefaultDialTimeout      = 5 * time.Second
	DefaultAuthDatabase     = "postgres"
	DefaultAuthCacheTTL     = time.Minute
)

// Gateway serves PostgreSQL connections. Create it with New, then Start.
type Gateway struct {
	cfg       Config
	snapshot  atomic.Pointer[topology.Snapshot]
	slots     chan struct{} // one token per open connection
	refusing  chan struct{} // one token per connection being refused over the cap
	sources   *sourceTable
	pool      *backendPool // nil: no session pooling
	sessions  *sessionTable
	verifiers *verifierCache
	throttle  *throttle.Failures
	// mockSecret makes the salts of mock authentication: derived from the
	// TLS key, so every node of a cluster shows an unknown role the same
	// salt, across restarts.
	mockSecret []byte
	cert       atomic.Pointer[tls.Certificate]
	// endPoint is the tls-server-end-point channel binding data of cert.
	endPoint atomic.Pointer[[]byte]
	tls      *tls.Config // client-facing, built once from cfg.TLS
	// relay copies proxied sessions from its loops; nil: goroutines do.
	relay *relay.Loops

	mu        sync.Mutex // guards listeners and closed
	listeners map[string]*listener
	closed    bool
	conns     sync.WaitGroup
}

type listener struct {
	ln   net.Listener
	done chan struct{}
}

// New makes a gateway that serves the given snapshot.
func New(cfg Config, s *topology.Snapshot) (*Gateway, error) {
	if cfg.NodeID > 127 {
		return nil, fmt.Errorf("gateway: node id %d out of range 0 to 127", cfg.NodeID)
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if cfg.PoolIdleTimeout <= 0 {
		cfg.PoolIdleTimeout = DefaultPoolIdleTimeout
	}
	if cfg.MaxConnectionsPerSource <= 0 {
		cfg.MaxConnectionsPerSource = DefaultMaxConnectionsPerSource
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.BackendTLS == "" {
		cfg.BackendTLS = BackendTLSRequire
	}
	if cfg.Auth == "" {
		cfg.Auth = AuthTerminate
	}
	if cfg.AuthDatabase == "" {
		cfg.AuthDatabase = DefaultAuthDatabase
	}
	if cfg.AuthCacheTTL <= 0 {
		cfg.AuthCacheTTL = DefaultAuthCacheTTL
	}
	switch {
	case cfg.Auth != AuthTerminate && cfg.Auth != AuthPassthrough:
		return nil, fmt.Errorf("gateway: auth mode %q: want terminate or passthrough", cfg.Auth)
	case cfg.Auth == AuthTerminate && (cfg.AuthRole == "" || cfg.AuthPassfile == ""):
		return nil, errors.New("gateway: gateway_auth terminate (the default) needs gateway_auth_user ROLE PASSWORD_FILE, the role that looks up password verifiers on the backends (docs/operator-guide.md), or gateway_auth passthrough")
	}
	for _, l := range cfg.Listen {
		if _, err := netip.ParseAddrPort(l); err != nil {
			return nil, fmt.Errorf("gateway: listen address %q: want IP:port: %w", l, err)
		}
	}
	g := &Gateway{
		cfg:       cfg,
		slots:     make(chan struct{}, cfg.MaxConnections),
		refusing:  make(chan struct{}, max(64, cfg.MaxConnections/50)),
		sources:   newSourceTable(cfg.MaxConnectionsPerSource),
		sessions:  newSessionTable(cfg.NodeID),
		throttle:  throttle.New(),
		listeners: map[string]*listener{},
	}
	g.verifiers = newVerifierCache(g)
	if cfg.PoolSize > 0 && cfg.Auth == AuthTerminate {
		g.pool = newBackendPool(cfg.PoolSize, cfg.PoolIdleTimeout)
	}
	g.snapshot.Store(s)
	if cfg.TLS != nil {
		if len(cfg.TLS.Certificates) == 0 {
			return nil, errors.New("gateway: TLS configuration without a certificate")
		}
		g.SetCertificate(cfg.TLS.Certificates[0])
		g.tls = g.tlsConfig()
		if der, err := x509.MarshalPKCS8PrivateKey(cfg.TLS.Certificates[0].PrivateKey); err == nil {
			sum := sha256.Sum256(append([]byte("pgplane mock authentication\x00"), der...))
			g.mockSecret = sum[:]
		}
	}
	if g.mockSecret == nil {
		g.mockSecret = make([]byte, 32)
		rand.Read(g.mockSecret)
	}
	if cfg.RelayThreads >= 0 {
		loops, err := relay.Start(cfg.RelayThreads)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.relay = loops
	}
	return g, nil
}

// SetCertificate replaces the certificate new TLS connections see.
func (g *Gateway) SetCertificate(c tls.Certificate) {
	var binding []byte
	if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
		binding, _ = pgwire.EndPointBinding(leaf)
	}
	g.endPoint.Store(&binding)
	g.cert.Store(&c)
}

// Start opens the listeners of the active addresses.
func (g *Gateway) Start() error { return g.reconcile() }

// Update swaps in a new snapshot: new connections see it at once, the
// listeners follow the regions' active addresses (G1), and connections to
// a backend that is no longer their server's (a failover, or a changed
// backend address) are closed, so that their clients reconnect to the new
// one rather than write into an old primary or a read-only standby (C6).
func (g *Gateway) Update(s *topology.Snapshot) error {
	g.snapshot.Store(s)
	if g.pool != nil {
		g.pool.drop(func(k poolKey) bool { si := s.Server(k.server); return si != nil && si.Backend() == k.backend })
	}
	if n := g.sessions.closeMoved(s); n > 0 {
		g.cfg.Logger.Warn().Int("connections", n).Msg("gateway: closed the connections to backends their servers moved away from")
	}
	return g.reconcile()
}

// Listening returns the addresses being served now.
func (g *Gateway) Listening() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, l := range g.cfg.Listen {
		if g.listeners[l] != nil {
			out = append(out, l)
		}
	}
	return out
}

// wanted reports whether a listen address should be served under snapshot s:
// not while its host is a region's standby gateway address.
func wanted(s *topology.Snapshot, addr string) bool {
	ap := netip.MustParseAddrPort(addr)
	for _, r := range s.Regions {
		for _, gw := range r.Gateways {
			if gw == ap.Addr() {
				return gw == r.Active
			}
		}
	}
	return true
}

func (g *Gateway) reconcile() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	s := g.snapshot.Load()
	var errs []error
	for _, addr := range g.cfg.Listen {
		l := g.listeners[addr]
		switch want := wanted(s, addr); {
		case want && l == nil:
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				errs = append(errs, fmt.Errorf("gateway: listening on %s: %w", addr, err))
				continue
			}
			l = &listener{ln: ln, done: make(chan struct{})}
			g.listeners[addr] = l
			go g.accept(l)
			g.cfg.Logger.Info().Str("address", addr).Msg("gateway listening")
		case !want && l != nil:
			l.ln.Close()
			<-l.done
			delete(g.listeners, addr)
			g.cfg.Logger.Info().Str("address", addr).Msg("gateway address inactive: not listening")
		}
	}
	return errors.Join(errs...)
}

// Stop closes the listeners and every open connection, and waits for them.
func (g *Gateway) Stop() {
	g.mu.Lock()
	g.closed = true
	for addr, l := range g.listeners {
		l.ln.Close()
		<-l.done
		delete(g.listeners, addr)
	}
	g.mu.Unlock()
	g.sessions.closeAll()
	g.conns.Wait()
	if g.pool != nil {
		g.pool.closeAll()
	}
	if g.relay != nil {
		g.relay.Stop()
	}
	g.verifiers.close()
}

// backendTLSConfig is the TLS configuration of a connection to a backend
// on host, or nil when backend TLS is disabled (G7).
func (g *Gateway) backendTLSConfig(host string) *tls.Config {
	return BackendTLSConfig(g.cfg.BackendTLS, g.cfg.BackendRootCAs, host)
}

// BackendTLSConfig is the TLS configuration of a connection to a backend on
// host under a backend TLS mode, or nil for BackendTLSDisable. The cluster's
// monitoring connections use it too, so that they reach the backends as the
// gateway does.
func BackendTLSConfig(mode BackendTLS, roots *x509.CertPool, host string) *tls.Config {
	if mode == BackendTLSDisable {
		return nil
	}
	return &tls.Config{ServerName: host, RootCAs: roots, InsecureSkipVerify: mode != BackendTLSVerifyFull, // #nosec G402 -- "require" is libpq's sslmode=require: encrypted, not verified
		// Classical key exchange only: Go's default hybrid X25519MLKEM768 key
		// share costs ~10% of a new connection's CPU, and PostgreSQL built
		// with OpenSSL 3.0 (Debian 12) cannot use it. The client-facing leg
		// keeps Go's defaults.
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
}

func (g *Gateway) accept(l *listener) {
	defer close(l.done)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			g.cfg.Logger.Warn().Err(err).Msg("gateway accept")
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case g.slots <- struct{}{}:
		default:
			// Over the cap (G8): refuse, as PostgreSQL does, after the TLS
			// handshake and the startup packet, where libpq shows the error
			// (it hides an error sent in answer to its SSLRequest). A small
			// pool of refusals bounds what that costs; past it, close.
			select {
			case g.refusing <- struct{}{}:
				g.conns.Add(1)
				go g.serve(c, g.tooManyClients(), func() {
					<-g.refusing
					g.conns.Done()
				})
			default:
				c.Close()
				connections.WithLabelValues("", decisionCapacity).Inc()
			}
			continue
		}
		if g.relay != nil {
			c = relay.NewSocket(c)
		}
		g.conns.Add(1)
		go g.serve(c, nil, func() {
			<-g.slots
			g.conns.Done()
		})
	}
}

// cancelKey is the key the gateway hands a client in BackendKeyData: the
// process ID carries the node ID in bits 24 to 30 and a session counter
// below; the secret is random. It is never the backend's own key (G2a).
type cancelKey struct{ pid, secret uint32 }

// NodeOf returns the node ID written into a cancel key's process ID.
func NodeOf(pid uint32) uint8 { return uint8(pid >> 24 & 0x7f) }

// backendKey is a backend's own cancel key, where it runs, and the server
// it serves.
type backendKey struct {
	server      string
	addr        string
	pid, secret uint32
}

// sessionTable maps the keys handed to clients to their backends, and holds
// the open client connections so that Stop can close them.
type sessionTable struct {
	node    uint8
	counter atomic.Uint32
	mu      sync.Mutex
	keys    map[cancelKey]backendKey
	conns   map[net.Conn]struct{}
	proxied map[*session]struct{} // sessions copying to a backend
}

func newSessionTable(node uint8) *sessionTable {
	return &sessionTable{node: node, keys: map[cancelKey]backendKey{}, conns: map[net.Conn]struct{}{}, proxied: map[*session]struct{}{}}
}

// startProxy registers a session that copies to its backend.
func (t *sessionTable) startProxy(s *session) {
	t.mu.Lock()
	t.proxied[s] = struct{}{}
	t.mu.Unlock()
}

func (t *sessionTable) endProxy(s *session) {
	t.mu.Lock()
	delete(t.proxied, s)
	t.mu.Unlock()
}

// closeMoved closes the proxied sessions whose server's backend under snap
// is not the one they copy to, and returns how many.
func (t *sessionTable) closeMoved(snap *topology.Snapshot) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for s := range t.proxied {
		si := snap.Server(s.server)
		if si != nil && si.Backend() == s.backendAddr {
			continue
		}
		s.moved.Store(true)
		closeNow(s.backend)
		closeNow(s.raw)
		delete(t.proxied, s)
		n++
	}
	return n
}

// newKey registers a backend key and returns the key to hand the client.
func (t *sessionTable) newKey(b backendKey) cancelKey {
	var rnd [4]byte
	rand.Read(rnd[:])
	k := cancelKey{pid: uint32(t.node)<<24 | t.counter.Add(1)&0xffffff, secret: binary.BigEndian.Uint32(rnd[:])}
	t.mu.Lock()
	t.keys[k] = b
	t.mu.Unlock()
	return k
}

func (t *sessionTable) lookup(k cancelKey) (backendKey, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.keys[k]
	return b, ok
}

func (t *sessionTable) forget(k cancelKey) {
	t.mu.Lock()
	delete(t.keys, k)
	t.mu.Unlock()
}

func (t *sessionTable) track(c net.Conn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *sessionTable) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// closeNow closes a connection's socket without the TLS close_notify, which
// could wait on a peer that does not read.
func closeNow(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	c.Close()
}

func (t *sessionTable) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}
