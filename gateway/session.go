package gateway

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
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
	// relay): the relay's end ends the session. release frees its slot
	// at the end.
	relayed bool
	release func()
	// deadline is the client connection's deadline in the startup phase;
	// sawFirst and proxyRead say how far the handshake came, so that a
	// session that parked takes it up where it stopped.
	deadline            time.Time
	sawFirst, proxyRead bool
}

// serve runs one connection to its end and logs it once (G9). A session
// with a refusal only negotiates, then sends it. release runs when the
// session ends: here, or when a relay loop that holds it hands it back.
func (g *Gateway) serve(raw net.Conn, refusal *pgwire.Error, release func()) {
	s := &session{g: g, raw: raw, conn: raw, started: time.Now(), refusal: refusal, release: release}
	g.sessions.track(raw)
	s.client = addrOf(raw.RemoteAddr())
	if refusal != nil {
		s.setDeadline(s.started.Add(refusalTimeout))
	} else {
		s.setDeadline(s.started.Add(g.cfg.HandshakeTimeout))
	}
	s.r = bufio.NewReaderSize(raw, sessionReadBuffer)
	s.proceed()
}

// proceed runs the session from where it stands. A session whose client
// is slow to send its next startup message waits in a relay loop without
// its goroutine (park), and proceeds again, on a new goroutine, when the
// client sends. Unless a relay loop holds it, the session ends here.
func (s *session) proceed() {
	err := s.run()
	if errors.Is(err, errPark) {
		if err = s.park(); err == nil {
			return // the loop's callback proceeds
		}
	}
	if s.relayed {
		return // the relay ends the session
	}
	if err != nil {
		s.fail(err)
	}
	s.end()
}

// park hands the session's socket to a relay loop until the client sends
// (or the session's deadline passes), then proceeds on a new goroutine. On
// an error nothing was handed over.
func (s *session) park() error {
	sock := socketOf(s.raw)
	timer := time.AfterFunc(time.Until(s.deadline), func() { sock.Close() })
	err := s.g.relay.Await(sock, func(err error) {
		if !timer.Stop() {
			s.fail(fmt.Errorf("waiting for the client's next message: %w", os.ErrDeadlineExceeded))
			s.end()
			return
		}
		if err == nil {
			err = sock.Reattach()
		}
		if err != nil {
			s.fail(err)
			s.end()
			return
		}
		s.raw.SetDeadline(s.deadline)
		s.proceed()
	})
	if err != nil {
		timer.Stop()
	}
	return err
}

// setDeadline sets the deadline of the client's connection, and keeps it
// for a session that parks.
func (s *session) setDeadline(t time.Time) {
	s.deadline = t
	s.raw.SetDeadline(t)
}

// parkAfter is how long a session waits in its goroutine for the client's
// next startup message before it parks in a relay loop: a client that
// talks at once never parks.
const parkAfter = 50 * time.Millisecond

// errPark is run's answer when the client has sent nothing for parkAfter.
var errPark = errors.New("gateway: the client is quiet; waiting in a relay loop")

// quiet reports whether the client has sent nothing for d, when the
// session could park (relay loops, a socket that can move into one).
func (s *session) quiet(d time.Duration) bool {
	if s.g.relay == nil || s.r.Buffered() > 0 || !relayable(s.raw) {
		return false
	}
	s.raw.SetReadDeadline(time.Now().Add(d))
	_, err := s.r.Peek(1)
	s.raw.SetDeadline(s.deadline)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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
	s.setDeadline(s.started.Add(s.g.cfg.AuthTimeout))
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
