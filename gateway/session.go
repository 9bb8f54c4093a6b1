package gateway

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pgplane/pgplane/topology"
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
	decisionTimeout         = "refused_timeout"
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
}

// serve runs one connection to its end and logs it once (G9).
func (g *Gateway) serve(raw net.Conn) {
	s := &session{g: g, raw: raw, conn: raw, started: time.Now()}
	g.sessions.track(raw)
	defer g.sessions.untrack(raw)
	defer raw.Close()
	defer s.log()
	s.client = addrOf(raw.RemoteAddr())
	raw.SetDeadline(s.started.Add(g.cfg.HandshakeTimeout))
	s.r = bufio.NewReaderSize(raw, 4096)
	if err := s.run(); err != nil {
		s.fail(err)
	}
}

// fail records why the session ended and tells the client when it can.
func (s *session) fail(err error) {
	var pe *pgError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		if s.decision == "" {
			s.decision = decisionProtocol
		}
		s.reason = pe.Message
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.conn.Write(pe.encode())
	case errors.Is(err, errProtocol):
		s.decision, s.reason = decisionProtocol, err.Error()
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.conn.Write((&pgError{Code: "08P01", Message: err.Error()}).encode())
	case errors.As(err, &ne) && ne.Timeout():
		if s.decision == "" {
			s.decision = decisionTimeout
		}
		s.reason = err.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		if s.decision == "" {
			s.decision, s.reason = decisionProtocol, "client closed the connection during the startup phase"
		}
	default:
		if s.decision == "" {
			s.decision = decisionProtocol
		}
		s.reason = err.Error()
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
	ev.Int64("bytes_in", s.bytesIn).Int64("bytes_out", s.bytesOut).
		Dur("duration", time.Since(s.started)).Msg("connection")
	connections.WithLabelValues(s.server, s.decision).Inc()
}

// run is the startup phase, then the proxying.
func (s *session) run() error {
	if s.g.trustedProxy(s.client) {
		src, err := readProxyHeader(s.r)
		if err != nil {
			return err
		}
		if src.IsValid() {
			s.client = src
		}
	}
	if first, err := s.r.Peek(1); errors.Is(err, io.EOF) {
		s.decision, s.reason = decisionEmpty, "closed before sending anything"
		return nil
	} else if err != nil {
		return err
	} else if first[0] == 0x16 { // a TLS record: direct TLS (G2)
		if err := s.startTLS(true); err != nil {
			return err
		}
	}
	for {
		p, err := readStartupPacket(s.r)
		if err != nil {
			return err
		}
		switch p.code {
		case sslRequestCode:
			if s.tlsVer != 0 {
				return fmt.Errorf("%w: SSLRequest inside TLS", errProtocol)
			}
			if s.g.cfg.TLS == nil {
				if _, err := s.conn.Write([]byte{'N'}); err != nil {
					return err
				}
				continue
			}
			// Bytes after the SSLRequest and before the handshake would be
			// read as if they were encrypted (CVE-2021-23214).
			if s.r.Buffered() > 0 {
				return &pgError{Code: "08P01", Message: "received unencrypted data after SSL request",
					Detail: "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."}
			}
			if _, err := s.conn.Write([]byte{'S'}); err != nil {
				return err
			}
			if err := s.startTLS(false); err != nil {
				return err
			}
		case gssEncRequestCode:
			if s.r.Buffered() > 0 {
				return &pgError{Code: "08P01", Message: "received unencrypted data after GSSAPI encryption request"}
			}
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return err
			}
		case cancelRequestCode:
			s.decision = decisionCancel
			return s.cancel(cancelKey{p.cancelPID, p.cancelKey})
		default:
			return s.startup(p)
		}
	}
}

// startTLS runs the TLS handshake over the connection. Direct TLS must
// negotiate ALPN "postgresql".
func (s *session) startTLS(direct bool) error {
	start := time.Now()
	tc := tls.Server(&bufferedConn{Conn: s.raw, r: s.r}, s.g.tls)
	if err := tc.Handshake(); err != nil {
		s.decision = decisionTLSVersion
		var re tls.RecordHeaderError
		if !errors.As(err, &re) && !strings.Contains(err.Error(), "version") {
			s.decision = decisionProtocol
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	handshakeSeconds.Observe(time.Since(start).Seconds())
	cs := tc.ConnectionState()
	s.conn, s.r, s.tlsVer, s.sni = tc, bufio.NewReaderSize(tc, 4096), cs.Version, cs.ServerName
	if direct && cs.NegotiatedProtocol != alpnPostgres {
		return &pgError{Code: "08P01", Message: "direct TLS connection without ALPN protocol \"postgresql\"",
			Hint: "use sslnegotiation=postgres, or a client that sends ALPN postgresql"}
	}
	return nil
}

const alpnPostgres = "postgresql"

// tlsConfig builds the client-facing TLS configuration, once: the
// certificate comes from SetCertificate, and each server's TLS versions apply
// as soon as its name is known from SNI (G4).
func (g *Gateway) tlsConfig() *tls.Config {
	base := g.cfg.TLS
	cfg := base.Clone()
	cfg.Certificates = nil
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return g.cert.Load(), nil }
	cfg.NextProtos = []string{alpnPostgres}
	cfg.MinVersion = tls.VersionTLS12
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		si := g.snapshot.Load().ServerForHost(hello.ServerName)
		if si == nil {
			return nil, nil
		}
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.MinVersion, c.MaxVersion = tlsVersion(si.TLS.MinVersion), tlsVersion(si.TLS.MaxVersion)
		return c, nil
	}
	return cfg
}

// tlsVersion maps a PostgreSQL TLS parameter to crypto/tls; "" is 0 (no bound).
func tlsVersion(v string) uint16 {
	switch v {
	case "TLSv1":
		return tls.VersionTLS10
	case "TLSv1.1":
		return tls.VersionTLS11
	case "TLSv1.2":
		return tls.VersionTLS12
	case "TLSv1.3":
		return tls.VersionTLS13
	}
	return 0
}

// startup routes a startup message, applies the server's policy, and
// connects the session to its backend (G3–G7).
func (s *session) startup(p *startupPacket) error {
	snap := s.g.snapshot.Load()
	s.user, s.db = p.get("user"), p.get("database")
	if s.db == "" {
		s.db = s.user
	}
	key := refusalKey{s.client, p.get("user"), s.db}
	si, err := s.route(snap, p)
	if err != nil {
		if r, ok := s.g.refusals.recall(key); ok && s.tlsVer == 0 && s.decision == decisionNoServer {
			// libpq's plaintext retry after a refusal over TLS: say again why.
			s.decision, s.server = r.decision, r.server
			return r.err
		}
		return err
	}
	s.server = si.Server.Name
	if d := snap.Admit(si, s.client); d != topology.Allowed {
		s.decision = d
		e := admissionError(snap, si, s.client, d)
		s.g.refusals.remember(key, refusal{err: e, decision: d, server: s.server})
		return e
	}
	if err := s.checkTLS(si); err != nil {
		return err
	}
	return s.proxy(si, p)
}

// route finds the server: by the TLS server name, else by user@NAME (G3).
func (s *session) route(snap *topology.Snapshot, p *startupPacket) (*topology.ServerInfo, error) {
	user := p.get("user")
	name, suffix := "", ""
	if at := strings.LastIndexByte(user, '@'); at >= 0 {
		name, suffix = user[:at], user[at+1:]
	}
	if s.sni != "" {
		if si := snap.ServerForHost(s.sni); si != nil {
			if suffix == si.Server.Name {
				p.set("user", name) // the user is passed on without @NAME
				s.user = name
			}
			return si, nil
		}
	}
	if suffix != "" {
		if si := snap.Servers[strings.ToLower(suffix)]; si != nil {
			p.set("user", name)
			s.user = name
			return si, nil
		}
		s.decision = decisionNoServer
		return nil, &pgError{Code: "08004", Message: fmt.Sprintf("server %q does not exist", suffix),
			Hint: "check the server name after the @ in the user name"}
	}
	s.decision = decisionNoServer
	if s.sni != "" {
		return nil, &pgError{Code: "08004", Message: fmt.Sprintf("no server is named by the TLS server name %q", s.sni),
			Hint: "connect to NAME.postgres.database.azure.com, or put the server in the user name: user=USER@NAME"}
	}
	return nil, &pgError{Code: "08004", Message: "the gateway cannot tell which server you want",
		Hint: "connect to NAME.postgres.database.azure.com over TLS (host=NAME.postgres.database.azure.com), or put the server in the user name: user=USER@NAME"}
}

// admissionError explains a refused admission, with a hint to fix it (G5, G6).
func admissionError(snap *topology.Snapshot, si *topology.ServerInfo, client netip.Addr, decision string) *pgError {
	name := si.Server.Name
	if decision == topology.DeniedPrivate {
		return &pgError{Code: "28000",
			Message: fmt.Sprintf("server %q accepts connections only from its virtual network and directly peered networks; client address %s is outside them", name, client),
			Detail:  "address spaces admitted: " + snap.AddressSpaceHint(si),
			Hint:    "connect from a VM in the server's VNet or a directly peered VNet (peering is not transitive)"}
	}
	return &pgError{Code: "28000",
		Message: fmt.Sprintf("no firewall rule of server %q admits client address %s", name, client),
		Hint: fmt.Sprintf("add a rule: pgplanectl firewall-rule create --server %s --name allow-%s --start-ip-address %s --end-ip-address %s",
			name, strings.ReplaceAll(client.String(), ".", "-"), client, client)}
}

// checkTLS applies require_secure_transport and the TLS version bounds (G4).
func (s *session) checkTLS(si *topology.ServerInfo) error {
	if s.tlsVer == 0 {
		if si.TLS.RequireSecureTransport {
			s.decision = decisionTLSRequired
			return &pgError{Code: "28000",
				Message: fmt.Sprintf("server %q requires TLS (require_secure_transport is on); this connection is not encrypted", si.Server.Name),
				Hint:    "connect with sslmode=require or stronger, e.g. sslmode=verify-full sslrootcert=CA-FILE"}
		}
		return nil
	}
	lo, hi := tlsVersion(si.TLS.MinVersion), tlsVersion(si.TLS.MaxVersion)
	if s.tlsVer < lo || (hi != 0 && s.tlsVer > hi) {
		s.decision = decisionTLSVersion
		return &pgError{Code: "28000",
			Message: fmt.Sprintf("%s is outside the TLS versions server %q allows (%s to %s)", tls.VersionName(s.tlsVer), si.Server.Name, si.TLS.MinVersion, orAny(si.TLS.MaxVersion)),
			Hint:    "use a client that supports the allowed versions, or change ssl_min_protocol_version / ssl_max_protocol_version"}
	}
	return nil
}

func orAny(v string) string {
	if v == "" {
		return "the newest"
	}
	return v
}

// proxy connects to the backend, relays the authentication exchange, then
// copies bytes both ways until either side closes.
func (s *session) proxy(si *topology.ServerInfo, p *startupPacket) error {
	if opts := p.protocolOptions(); p.code != protocolV3 || len(opts) > 0 {
		// The gateway speaks 3.0 to the backend and says so to the client.
		if _, err := s.conn.Write(negotiateProtocolVersion(opts)); err != nil {
			return err
		}
	}
	backend, br, sameCert, err := s.dialBackend(si.Backend)
	if err != nil {
		s.decision, s.reason = decisionBackendDown, err.Error()
		return &pgError{Code: "08006", Message: fmt.Sprintf("server %q is not reachable: its backend does not answer", si.Server.Name),
			Hint: "try again in a moment; if it persists, the server may be down or failing over"}
	}
	defer backend.Close()
	s.raw.SetDeadline(s.started.Add(s.g.cfg.AuthTimeout))
	backend.SetDeadline(s.started.Add(s.g.cfg.AuthTimeout))
	if _, err := backend.Write(p.encodeForBackend()); err != nil {
		return err
	}
	key, ok, err := s.relayAuth(backend, br, si.Backend, sameCert)
	if key != (cancelKey{}) {
		defer s.g.sessions.forget(key)
	}
	if err != nil || !ok {
		return err
	}
	s.decision = decisionProxied
	s.raw.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})
	return s.copy(backend, br)
}

// dialBackend connects to a backend, over TLS unless disabled (G7). It
// reports whether the backend presents the gateway's own certificate, in
// which case channel binding works across the gateway.
func (s *session) dialBackend(addr string) (net.Conn, *bufio.Reader, bool, error) {
	c, err := net.DialTimeout("tcp", addr, s.g.cfg.DialTimeout)
	if err != nil {
		return nil, nil, false, err
	}
	if s.g.cfg.BackendTLS == BackendTLSDisable {
		return c, bufio.NewReaderSize(c, 4096), false, nil
	}
	c.SetDeadline(time.Now().Add(s.g.cfg.DialTimeout))
	if _, err := c.Write(requestPacket(sslRequestCode)); err != nil {
		c.Close()
		return nil, nil, false, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil || answer[0] != 'S' {
		c.Close()
		return nil, nil, false, fmt.Errorf("backend %s does not accept TLS (answered %q, %v)", addr, answer[0], err)
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg := &tls.Config{ServerName: host, RootCAs: s.g.cfg.BackendRootCAs, InsecureSkipVerify: s.g.cfg.BackendTLS == BackendTLSRequire, // #nosec G402 -- "require" is libpq's sslmode=require: encrypted, not verified
		// Classical key exchange only: Go's default hybrid X25519MLKEM768 key
		// share costs ~10% of a new connection's CPU, and PostgreSQL built
		// with OpenSSL 3.0 (Debian 12) cannot use it. The client-facing leg
		// keeps Go's defaults.
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, nil, false, fmt.Errorf("TLS to backend %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return tc, bufio.NewReaderSize(tc, 4096), s.sameCertificate(tc), nil
}

// sameCertificate reports whether the backend's leaf certificate is the one
// the gateway showed the client: then tls-server-end-point channel binding
// computed by the client matches the backend's.
func (s *session) sameCertificate(backend *tls.Conn) bool {
	if _, ok := s.conn.(*tls.Conn); !ok {
		return false
	}
	bc := backend.ConnectionState().PeerCertificates
	if len(bc) == 0 {
		return false
	}
	c := s.g.cert.Load()
	return len(c.Certificate) > 0 && sha256.Sum256(c.Certificate[0]) == sha256.Sum256(bc[0].Raw)
}

// relayAuth relays the authentication exchange. It hides the backend's cancel
// key behind one of the gateway's own (G2a) and keeps channel binding out of
// the SASL offer unless both legs show the same certificate (G7). It returns
// ok once the backend is ready for queries.
func (s *session) relayAuth(backend net.Conn, br *bufio.Reader, addr string, sameCert bool) (cancelKey, bool, error) {
	var key cancelKey
	var out []byte
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		_, err := s.conn.Write(out)
		out = out[:0]
		return err
	}
	for {
		typ, payload, err := readMessage(br, maxAuthMessage)
		if err != nil {
			return key, false, fmt.Errorf("reading from backend: %w", err)
		}
		switch typ {
		case 'R':
			if len(payload) < 4 {
				return key, false, fmt.Errorf("%w: short authentication message from the backend", errProtocol)
			}
			code := binary.BigEndian.Uint32(payload)
			if code == 10 && !(sameCert && s.tlsVer != 0) {
				if payload, err = stripChannelBinding(payload); err != nil {
					return key, false, err
				}
			}
			out = appendMessage(out, typ, payload)
			switch code {
			case 0, 12: // AuthenticationOk, SASLFinal: nothing to answer
				continue
			case 3, 5, 10, 11: // cleartext, MD5, SASL, SASLContinue: the client answers
			default:
				return key, false, &pgError{Code: "08P01", Message: fmt.Sprintf("the backend asks for authentication method %d, which the gateway does not relay", code)}
			}
			if err := flush(); err != nil {
				return key, false, err
			}
			ctyp, cpayload, err := readMessage(s.r, maxAuthMessage)
			if err != nil {
				return key, false, fmt.Errorf("reading from client: %w", err)
			}
			if _, err := backend.Write(appendMessage(nil, ctyp, cpayload)); err != nil {
				return key, false, err
			}
		case 'K':
			if len(payload) != 8 {
				return key, false, fmt.Errorf("%w: BackendKeyData of %d bytes", errProtocol, len(payload))
			}
			key = s.g.sessions.newKey(backendKey{addr: addr, pid: binary.BigEndian.Uint32(payload), secret: binary.BigEndian.Uint32(payload[4:])})
			var mine [8]byte
			binary.BigEndian.PutUint32(mine[:], key.pid)
			binary.BigEndian.PutUint32(mine[4:], key.secret)
			out = appendMessage(out, 'K', mine[:])
		case 'E':
			s.decision, s.reason = decisionBackendRejected, errorMessage(payload)
			if s.reason == "SCRAM channel binding negotiation error" && !sameCert {
				// The backend saw the client's "y" flag: the client supports
				// channel binding, and the gateway had to hide it.
				return key, false, &pgError{Code: "08P01",
					Message: "SCRAM channel binding cannot cross the gateway to this server",
					Detail:  fmt.Sprintf("the backend %s presents a different TLS certificate than the gateway, so the client's channel binding cannot match it", addr),
					Hint:    "install the gateway's certificate and key on the backend (ssl_cert_file, ssl_key_file), or connect with channel_binding=disable"}
			}
			out = appendMessage(out, typ, payload)
			return key, false, flush()
		case 'Z':
			out = appendMessage(out, typ, payload)
			return key, true, flush()
		default:
			out = appendMessage(out, typ, payload)
		}
	}
}

// errorMessage extracts the M field of an ErrorResponse payload.
func errorMessage(payload []byte) string {
	for len(payload) > 1 {
		t := payload[0]
		v, rest, ok := cutCString(payload[1:])
		if !ok {
			break
		}
		if t == 'M' {
			return v
		}
		payload = rest
	}
	return ""
}

// copy moves bytes both ways until one side closes, without parsing them.
func (s *session) copy(backend net.Conn, br *bufio.Reader) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.bytesOut = drainAndCopy(s.conn, backend, br)
		closeWrite(s.conn)
	}()
	s.bytesIn = drainAndCopy(backend, s.conn, s.r)
	closeWrite(backend)
	wg.Wait()
	bytesTotal.WithLabelValues("in").Add(float64(s.bytesIn))
	bytesTotal.WithLabelValues("out").Add(float64(s.bytesOut))
	return nil
}

// copyBuffers hold the 16 KiB buffers (one TLS record) of the copy phase.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// drainAndCopy writes what the reader has buffered, then copies from the
// connection itself with a plain read and write per chunk. It does not let
// io.Copy splice plain TCP legs: PostgreSQL traffic is many small messages,
// and splice's two syscalls through a pipe per chunk cost more CPU per
// transaction than a read and a write (measured with bench-gateway).
func drainAndCopy(dst net.Conn, src net.Conn, buffered *bufio.Reader) int64 {
	var n int64
	if k := buffered.Buffered(); k > 0 {
		b, _ := buffered.Peek(k)
		w, err := dst.Write(b)
		n += int64(w)
		buffered.Discard(k)
		if err != nil {
			return n
		}
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	m, _ := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
	return n + m
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		c.CloseWrite()
	case *tls.Conn:
		c.CloseWrite()
	default:
		c.Close()
	}
}

// cancel forwards a CancelRequest to the backend that owns the session (G2a).
func (s *session) cancel(k cancelKey) error {
	if node := NodeOf(k.pid); node != s.g.cfg.NodeID {
		if s.g.cfg.ForwardCancel != nil && s.g.cfg.ForwardCancel(node, k.pid, k.secret) {
			s.reason = fmt.Sprintf("forwarded to node %d", node)
		} else {
			s.reason = fmt.Sprintf("cancel key of node %d, which is not reachable from node %d", node, s.g.cfg.NodeID)
		}
		return nil
	}
	s.reason = s.g.cancelLocal(k)
	return nil
}

// Cancel delivers a cancel request forwarded from another node (G2a).
func (g *Gateway) Cancel(pid, secret uint32) {
	reason := g.cancelLocal(cancelKey{pid, secret})
	g.cfg.Logger.Info().Str("decision", decisionCancel).Str("reason", reason).Msg("forwarded cancel")
}

// cancelLocal sends the backend's own CancelRequest for a key this node
// handed out, and says what happened.
func (g *Gateway) cancelLocal(k cancelKey) string {
	b, ok := g.sessions.lookup(k)
	if !ok {
		return "no session has this cancel key"
	}
	c, err := net.DialTimeout("tcp", b.addr, g.cfg.DialTimeout)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(g.cfg.DialTimeout))
	if _, err = c.Write(requestPacket(cancelRequestCode, b.pid, b.secret)); err != nil {
		return err.Error()
	}
	io.Copy(io.Discard, c) // the backend closes the connection once it has read the request
	return "sent to backend " + b.addr
}

// bufferedConn reads through a bufio.Reader that may hold bytes already read
// from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (g *Gateway) trustedProxy(a netip.Addr) bool {
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}
