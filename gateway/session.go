package gateway

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// Decisions logged for a connection, beside topology's access decisions.
const (
	decisionProxied         = "proxied"
	decisionProtocol        = "refused_protocol"
	decisionTLSRequired     = "refused_tls_required"
	decisionTLSVersion      = "refused_tls_version"
	decisionNoServer        = "refused_no_server"
	decisionBackendDown     = "backend_unreachable"
	decisionBackendRejected = "backend_refused"
	decisionCancel          = "cancel"
	decisionAuthFailed      = "refused_password"
	decisionAuthLookup      = "auth_lookup_failed"
	decisionTimeout         = "refused_timeout"
	decisionCapacity        = "refused_capacity"
	// decisionEmpty is a connection closed before its first byte: a TCP
	// health check, such as the cluster's probe of a gateway address. It is
	// counted but logged only at debug level.
	decisionEmpty = "closed_empty"
)

// session is one client connection.
type session struct {
	g       *Gateway
	raw     net.Conn
	conn    net.Conn      // raw, or the TLS connection over it
	r       *bufio.Reader // reads conn
	client  netip.Addr    // the real client address (PROXY v2 aware)
	tlsVer  uint16
	sni     string
	server  string
	user    string
	db      string
	started time.Time

	decision string
	reason   string
	bytesIn  int64 // client to backend, after the startup phase
	bytesOut int64

	// backend and backendAddr are the backend connection of a proxied
	// session; moved is set when the gateway closed it because its server's
	// backend changed.
	backend     net.Conn
	backendAddr string
	moved       atomic.Bool

	// refusal, when set, is sent once the client has negotiated TLS and
	// sent its startup packet (over a connection cap, G8 and G12);
	// counted: the session counts against its address's cap until it
	// authenticates (G12).
	refusal *pgwire.Error
	counted bool

	// poolKey, when set, lets the session give its backend connection back
	// to the pool; reused: the session got a pooled one.
	poolKey *poolKey
	reused  bool

	// relayed is set when a relay loop took the session over (package
	// relay): the relay's end ends the session; release frees its slot.
	relayed bool
	release func()
}

// serve runs one connection to its end and logs it once (G9). A session
// with a refusal only negotiates, then sends it. release runs when the
// session ends: here, or when a relayed session's relay ends.
func (g *Gateway) serve(raw net.Conn, refusal *pgwire.Error, release func()) {
	s := &session{g: g, raw: raw, conn: raw, started: time.Now(), refusal: refusal, release: release}
	g.sessions.track(raw)
	defer func() {
		if !s.relayed {
			s.end()
		}
	}()
	s.client = addrOf(raw.RemoteAddr())
	if refusal != nil {
		raw.SetDeadline(s.started.Add(refusalTimeout))
	} else {
		raw.SetDeadline(s.started.Add(g.cfg.HandshakeTimeout))
	}
	s.r = bufio.NewReaderSize(raw, sessionReadBuffer)
	if err := s.run(); err != nil {
		s.fail(err)
	}
}

// end closes the client's connection, logs the session and frees its
// slot.
func (s *session) end() {
	s.authenticated()
	s.log()
	s.raw.Close()
	s.g.sessions.untrack(s.raw)
	s.release()
}

// fail records why the session ended, from the error's kind, and tells the
// client when the refusal has words for it.
func (s *session) fail(err error) {
	r := classify(err)
	s.decision, s.reason = r.decision, r.reason
	if r.client != nil {
		if s.reason == "" {
			s.reason = r.client.Message
		}
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.conn.Write(r.client.Encode())
	}
}

func (s *session) log() {
	ev := s.g.cfg.Logger.Info()
	switch s.decision {
	case decisionProxied, decisionCancel:
	case decisionEmpty:
		ev = s.g.cfg.Logger.Debug()
	default:
		ev = s.g.cfg.Logger.Warn()
	}
	ev = ev.Str("client", s.client.String()).Str("server", s.server).Str("decision", s.decision)
	if s.tlsVer != 0 {
		ev = ev.Str("tls", tls.VersionName(s.tlsVer))
	} else {
		ev = ev.Str("tls", "none")
	}
	if s.sni != "" {
		ev = ev.Str("sni", s.sni)
	}
	if s.user != "" {
		ev = ev.Str("user", s.user).Str("database", s.db)
	}
	if s.reason != "" {
		ev = ev.Str("reason", s.reason)
	}
	if s.reused {
		ev = ev.Bool("pooled", true)
	}
	ev.Int64("bytes_in", s.bytesIn).Int64("bytes_out", s.bytesOut).
		Dur("duration", time.Since(s.started)).Msg("connection")
	connections.WithLabelValues(s.server, s.decision).Inc()
}

// run is a session, one step after another: the handshake (PROXY v2, the
// G12 cap, TLS, the startup packet), routing (G3), admission (G4–G6), the
// backend and authentication (G7, in the order of gateway_auth), then
// passing the session through. A step that refuses returns a typed
// refusal; fail logs it and tells the client.
func (s *session) run() error {
	p, err := s.handshake()
	if err != nil {
		return err
	}
	if p.code == cancelRequestCode {
		s.decision = decisionCancel
		return s.cancel(cancelKey{p.cancelPID, p.cancelKey})
	}
	s.user, s.db = p.get("user"), p.get("database")
	if s.db == "" {
		s.db = s.user
	}
	if s.refusal != nil {
		return refuse(decisionCapacity, s.refusal)
	}
	snap := s.g.snapshot.Load()
	si, err := s.route(snap, p)
	if err != nil {
		return err
	}
	s.server = si.Server.Name
	if err := s.admit(snap, si); err != nil {
		return err
	}
	if opts := p.protocolOptions(); p.code != protocolV3 || len(opts) > 0 {
		// The gateway speaks 3.0 to the backend and says so to the client.
		if _, err := s.conn.Write(negotiateProtocolVersion(opts)); err != nil {
			return err
		}
	}
	s.raw.SetDeadline(s.started.Add(s.g.cfg.AuthTimeout))
	var login *pooledConn
	var out []byte
	if s.g.cfg.Auth == AuthPassthrough {
		login, out, err = s.backendThenAuthenticate(si, p)
	} else {
		login, out, err = s.authenticateThenBackend(si, p)
	}
	if err != nil {
		return err
	}
	return s.passThrough(si, login, out)
}

// authenticated uncounts the session from its address's connections that
// have not finished authenticating (G12).
func (s *session) authenticated() {
	if s.counted {
		s.g.sources.leave(s.client)
		s.counted = false
	}
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}
