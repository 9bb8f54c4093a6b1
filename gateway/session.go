package gateway

import (
	"bufio"
	"crypto/rand"
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
	"sync/atomic"
	"time"

	"github.com/pgplane/pgplane/pgwire"

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
}

// serve runs one connection to its end and logs it once (G9). A session
// with a refusal only negotiates, then sends it.
func (g *Gateway) serve(raw net.Conn, refusal *pgwire.Error) {
	s := &session{g: g, raw: raw, conn: raw, started: time.Now(), refusal: refusal}
	g.sessions.track(raw)
	defer g.sessions.untrack(raw)
	defer raw.Close()
	defer s.log()
	defer s.authenticated()
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

// fail records why the session ended and tells the client when it can.
func (s *session) fail(err error) {
	var pe *pgwire.Error
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		if s.decision == "" {
			s.decision = decisionProtocol
		}
		if s.reason == "" {
			s.reason = pe.Message
		}
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.conn.Write(pe.Encode())
	case errors.Is(err, pgwire.ErrProtocol):
		s.decision, s.reason = decisionProtocol, err.Error()
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.conn.Write((&pgwire.Error{Code: "08P01", Message: err.Error()}).Encode())
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
	if s.reused {
		ev = ev.Bool("pooled", true)
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
	if s.refusal == nil {
		// G12: one address may hold only so many connections that have
		// not finished authenticating, so it cannot lock others out.
		if s.counted = s.g.sources.enter(s.client); !s.counted {
			s.refusal = s.g.tooManyFromSource(s.client)
			s.raw.SetDeadline(time.Now().Add(refusalTimeout))
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
				return fmt.Errorf("%w: SSLRequest inside TLS", pgwire.ErrProtocol)
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
				return &pgwire.Error{Code: "08P01", Message: "received unencrypted data after SSL request",
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
				return &pgwire.Error{Code: "08P01", Message: "received unencrypted data after GSSAPI encryption request"}
			}
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return err
			}
		case cancelRequestCode:
			s.decision = decisionCancel
			return s.cancel(cancelKey{p.cancelPID, p.cancelKey})
		default:
			if s.refusal != nil {
				s.decision, s.user, s.db = decisionCapacity, p.get("user"), p.get("database")
				return s.refusal
			}
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
	s.conn, s.r, s.tlsVer, s.sni = tc, bufio.NewReaderSize(tc, sessionReadBuffer), cs.Version, cs.ServerName
	if direct && cs.NegotiatedProtocol != alpnPostgres {
		return &pgwire.Error{Code: "08P01", Message: "direct TLS connection without ALPN protocol \"postgresql\"",
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
	// One configuration per TLS version policy, made once: a connection
	// keeps its configuration, so a clone per handshake would cost every
	// session the memory of one.
	var byPolicy sync.Map // [2]uint16{min, max} -> *tls.Config
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		si := g.snapshot.Load().ServerForHost(hello.ServerName)
		if si == nil {
			return nil, nil
		}
		policy := [2]uint16{tlsVersion(si.TLS.MinVersion), tlsVersion(si.TLS.MaxVersion)}
		if c, ok := byPolicy.Load(policy); ok {
			return c.(*tls.Config), nil
		}
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.MinVersion, c.MaxVersion = policy[0], policy[1]
		actual, _ := byPolicy.LoadOrStore(policy, c)
		return actual.(*tls.Config), nil
	}
	return cfg
}

// sessionReadBuffer is the size of a session's read buffers. The startup
// phase reads small messages; the copy phase reads into 16 KiB buffers of
// its own, which bypass these. Small buffers keep an idle session small.
const sessionReadBuffer = 512

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

// startup routes a startup message, applies the server's policy,
// authenticates the client and connects the session to its backend
// (G3–G7).
func (s *session) startup(p *startupPacket) error {
	snap := s.g.snapshot.Load()
	s.user, s.db = p.get("user"), p.get("database")
	if s.db == "" {
		s.db = s.user
	}
	si, err := s.route(snap, p)
	if err != nil {
		return err
	}
	s.server = si.Server.Name
	if d := snap.Admit(si, s.client); d != topology.Allowed {
		s.decision = d
		return admissionError(snap, si, s.client, d)
	}
	if err := s.checkTLS(si); err != nil {
		return err
	}
	if opts := p.protocolOptions(); p.code != protocolV3 || len(opts) > 0 {
		// The gateway speaks 3.0 to the backend and says so to the client.
		if _, err := s.conn.Write(negotiateProtocolVersion(opts)); err != nil {
			return err
		}
	}
	s.raw.SetDeadline(s.started.Add(s.g.cfg.AuthTimeout))
	if s.g.cfg.Auth == AuthPassthrough {
		return s.passthrough(si, p)
	}
	return s.terminate(si, p)
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
		return nil, &pgwire.Error{Code: "08004", Message: fmt.Sprintf("server %q does not exist", suffix),
			Hint: "check the server name after the @ in the user name"}
	}
	s.decision = decisionNoServer
	if s.tlsVer == 0 {
		return nil, &pgwire.Error{Code: "08004", Message: "the gateway cannot tell which server you want: this connection is not encrypted, so it carries no TLS server name",
			Detail: "libpq's default sslmode=prefer tries again without TLS after any error; if an error of the TLS attempt came before this one, that error is the one to act on",
			Hint:   "connect over TLS to NAME.postgres.database.azure.com (sslmode=require or stronger), or put the server in the user name: user=USER@NAME"}
	}
	if s.sni != "" {
		return nil, &pgwire.Error{Code: "08004", Message: fmt.Sprintf("no server is named by the TLS server name %q", s.sni),
			Hint: "connect to NAME.postgres.database.azure.com, or put the server in the user name: user=USER@NAME"}
	}
	return nil, &pgwire.Error{Code: "08004", Message: "the gateway cannot tell which server you want",
		Hint: "connect to NAME.postgres.database.azure.com over TLS (host=NAME.postgres.database.azure.com), or put the server in the user name: user=USER@NAME"}
}

// admissionError explains a refused admission, with a hint to fix it (G5, G6).
func admissionError(snap *topology.Snapshot, si *topology.ServerInfo, client netip.Addr, decision string) *pgwire.Error {
	name := si.Server.Name
	if decision == topology.DeniedPrivate {
		return &pgwire.Error{Code: "28000",
			Message: fmt.Sprintf("server %q accepts connections only from its virtual network and directly peered networks; client address %s is outside them", name, client),
			Detail:  "address spaces admitted: " + snap.AddressSpaceHint(si),
			Hint:    "connect from a VM in the server's VNet or a directly peered VNet (peering is not transitive)"}
	}
	return &pgwire.Error{Code: "28000",
		Message: fmt.Sprintf("no firewall rule of server %q admits client address %s", name, client),
		Hint: fmt.Sprintf("add a rule: pgplanectl firewall-rule create --server %s --name allow-%s --start-ip-address %s --end-ip-address %s",
			name, strings.ReplaceAll(client.String(), ".", "-"), client, client)}
}

// checkTLS applies require_secure_transport and the TLS version bounds (G4).
func (s *session) checkTLS(si *topology.ServerInfo) error {
	if s.tlsVer == 0 {
		if si.TLS.RequireSecureTransport {
			s.decision = decisionTLSRequired
			return &pgwire.Error{Code: "28000",
				Message: fmt.Sprintf("server %q requires TLS (require_secure_transport is on); this connection is not encrypted", si.Server.Name),
				Hint:    "connect with sslmode=require or stronger, e.g. sslmode=verify-full sslrootcert=CA-FILE"}
		}
		return nil
	}
	lo, hi := tlsVersion(si.TLS.MinVersion), tlsVersion(si.TLS.MaxVersion)
	if s.tlsVer < lo || (hi != 0 && s.tlsVer > hi) {
		s.decision = decisionTLSVersion
		return &pgwire.Error{Code: "28000",
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

// passthrough relays the backend's own authentication exchange
// (gateway_auth passthrough), then the session.
func (s *session) passthrough(si *topology.ServerInfo, p *startupPacket) error {
	backend, br, err := s.dialBackend(si, p)
	if err != nil {
		return err
	}
	defer backend.Close()
	if ok, err := s.relayAuth(backend, br, s.sameCertificate(backend)); err != nil || !ok {
		return err
	}
	return s.serveBackend(si, backend, br)
}

// terminate authenticates the client at the gateway (gateway_auth
// terminate): it checks the client's SCRAM proof (or MD5 answer) against
// the role's secret looked up on the backend, then logs in to the backend
// as the role with what the proof revealed, and relays the session (G7).
func (s *session) terminate(si *topology.ServerInfo, p *startupPacket) error {
	if s.user == "" {
		return &pgwire.Error{Code: "28000", Message: "no PostgreSQL user name specified in startup packet"}
	}
	authRole := si.AuthRole
	if authRole == "" {
		authRole = s.g.cfg.AuthRole
	}
	sec, err := s.g.verifiers.lookup(si.Backend, authRole, s.user)
	if err != nil {
		s.decision, s.reason = decisionAuthLookup, err.Error()
		return &pgwire.Error{Code: "08006", Message: fmt.Sprintf("server %q cannot check passwords now: the gateway could not look up the role on the backend", si.Server.Name),
			Hint: "try again in a moment; if it persists, the gateway's log names the cause (the backend, or the auth role's login and lookup function)"}
	}
	var cred pgwire.Credentials
	var final []byte
	if sec.md5 != "" {
		cred, err = s.md5Exchange(sec.md5)
	} else {
		cred, final, err = s.scramExchange(sec)
	}
	if errors.Is(err, pgwire.ErrAuthFailed) {
		return s.authFailed(si, authRole, sec)
	}
	if err != nil {
		return err
	}
	s.g.throttle.succeeded(s.client.String())
	if s.g.pool != nil {
		s.poolKey = &poolKey{server: si.Server.Name, backend: si.Backend, params: p.sessionKey()}
		if pc := s.g.pool.get(*s.poolKey); pc != nil {
			return s.reuse(si, pc, final)
		}
	}
	backend, br, err := s.dialBackend(si, p)
	if err != nil {
		return err
	}
	if err := pgwire.Authenticate(backend, br, cred); err != nil {
		backend.Close()
		s.decision, s.reason = decisionBackendRejected, err.Error()
		var pe *pgwire.Error
		if errors.As(err, &pe) {
			if pe.Code == "28P01" {
				s.g.verifiers.forget(si.Backend, authRole, s.user)
			}
			return pe
		}
		return &pgwire.Error{Code: "08006", Message: fmt.Sprintf("server %q: the gateway could not log in to the backend as %q", si.Server.Name, s.user),
			Detail: err.Error()}
	}
	var out []byte
	if final != nil {
		out = pgwire.AuthMessage(pgwire.AuthSASLFinal, final)
	}
	if _, err := s.conn.Write(append(out, pgwire.AuthMessage(pgwire.AuthOK, nil)...)); err != nil {
		backend.Close()
		return err
	}
	return s.serveBackend(si, backend, br)
}

// authFailed refuses a wrong password, or a role that does not exist, with
// PostgreSQL's own words for both; repeated failures from one address are
// answered more and more slowly (G7).
func (s *session) authFailed(si *topology.ServerInfo, authRole string, sec secret) error {
	s.g.verifiers.forget(si.Backend, authRole, s.user)
	s.decision, s.reason = decisionAuthFailed, "password does not match"
	if sec.mock {
		s.reason = "mock authentication: " + sec.why
	}
	if d := s.g.throttle.failed(s.client.String()); d > 0 {
		s.reason += fmt.Sprintf("; answered after %v (repeated failures from this address)", d)
		time.Sleep(d)
	}
	return &pgwire.Error{Code: "28P01", Message: `password authentication failed for user "` + s.user + `"`}
}

// scramExchange runs SCRAM-SHA-256 with the client, the gateway as the
// server: SCRAM-SHA-256-PLUS is offered over TLS, bound to the gateway's
// own certificate. It returns the credentials to log in to the backend and
// the server-final-message, or pgwire.ErrAuthFailed.
func (s *session) scramExchange(sec secret) (pgwire.Credentials, []byte, error) {
	v := sec.scram
	if sec.mock {
		v = pgwire.MockVerifier(s.g.mockSecret, s.user)
	}
	srv := &pgwire.ScramServer{}
	if s.tlsVer != 0 {
		srv.EndPoint = *s.g.endPoint.Load()
	}
	var offer []byte
	for _, m := range srv.Mechanisms() {
		offer = pgwire.AppendCString(offer, m)
	}
	if _, err := s.conn.Write(pgwire.AuthMessage(pgwire.AuthSASL, append(offer, 0))); err != nil {
		return pgwire.Credentials{}, nil, err
	}
	payload, err := s.readPasswordMessage()
	if err != nil {
		return pgwire.Credentials{}, nil, err
	}
	mech, rest, ok := pgwire.CutCString(payload)
	if !ok || len(rest) < 4 {
		return pgwire.Credentials{}, nil, &pgwire.Error{Code: "08P01", Message: "malformed SASLInitialResponse message"}
	}
	data := rest[4:]
	if n := int32(binary.BigEndian.Uint32(rest)); n < 0 || int(n) != len(data) {
		return pgwire.Credentials{}, nil, &pgwire.Error{Code: "08P01", Message: "malformed SASLInitialResponse message"}
	}
	first, err := srv.ClientFirst(mech, data, v, sec.mock)
	if err != nil {
		return pgwire.Credentials{}, nil, err
	}
	if _, err := s.conn.Write(pgwire.AuthMessage(pgwire.AuthSASLContinue, first)); err != nil {
		return pgwire.Credentials{}, nil, err
	}
	if payload, err = s.readPasswordMessage(); err != nil {
		return pgwire.Credentials{}, nil, err
	}
	clientKey, final, err := srv.ClientFinal(payload)
	if err != nil {
		return pgwire.Credentials{}, nil, err
	}
	return pgwire.Credentials{SCRAM: pgwire.VerifierKeys(clientKey, v)}, final, nil
}

// md5Exchange runs PostgreSQL's md5 method with the client for a role whose
// stored password is an MD5 hash, as PgBouncer does: the hash is all it
// takes to check the client's answer and to answer the backend.
func (s *session) md5Exchange(hash string) (pgwire.Credentials, error) {
	var salt [4]byte
	rand.Read(salt[:])
	if _, err := s.conn.Write(pgwire.AuthMessage(pgwire.AuthMD5, salt[:])); err != nil {
		return pgwire.Credentials{}, err
	}
	payload, err := s.readPasswordMessage()
	if err != nil {
		return pgwire.Credentials{}, err
	}
	answer, _, ok := pgwire.CutCString(payload)
	if !ok || !pgwire.MD5Matches(hash, salt, answer) {
		return pgwire.Credentials{}, pgwire.ErrAuthFailed
	}
	return pgwire.Credentials{MD5Hash: hash}, nil
}

// readPasswordMessage reads the client's next authentication message
// ('p': PasswordMessage, SASLInitialResponse or SASLResponse).
func (s *session) readPasswordMessage() ([]byte, error) {
	typ, payload, err := pgwire.ReadMessage(s.r, pgwire.MaxAuthMessage)
	if err != nil {
		return nil, fmt.Errorf("reading from client: %w", err)
	}
	if typ != 'p' {
		return nil, &pgwire.Error{Code: "08P01", Message: fmt.Sprintf("expected password response, got message type %d", typ)}
	}
	return payload, nil
}

// dialBackend connects to the server's backend, over TLS unless disabled
// (G7), and sends the startup message.
func (s *session) dialBackend(si *topology.ServerInfo, p *startupPacket) (net.Conn, *bufio.Reader, error) {
	host, _, _ := net.SplitHostPort(si.Backend)
	backend, br, err := pgwire.Dial(si.Backend, s.g.backendTLSConfig(host), s.g.cfg.DialTimeout)
	if err != nil {
		s.decision, s.reason = decisionBackendDown, err.Error()
		return nil, nil, &pgwire.Error{Code: "08006", Message: fmt.Sprintf("server %q is not reachable: its backend does not answer", si.Server.Name),
			Hint: "try again in a moment; if it persists, the server may be down or failing over"}
	}
	backend.SetDeadline(s.started.Add(s.g.cfg.AuthTimeout))
	if _, err := backend.Write(p.encodeForBackend()); err != nil {
		backend.Close()
		return nil, nil, err
	}
	return backend, br, nil
}

// serveBackend relays the backend's messages up to ReadyForQuery, handing
// the client a cancel key of the gateway's own (G2a), then copies bytes
// both ways until either side closes. It keeps what a later client of a
// pooled connection needs: the ParameterStatus messages and the backend's
// own cancel key.
func (s *session) serveBackend(si *topology.ServerInfo, backend net.Conn, br *bufio.Reader) (err error) {
	s.authenticated()
	login := &pooledConn{conn: backend, r: br, status: map[string][]byte{}}
	proxying := false
	defer func() {
		if !proxying {
			backend.Close()
		}
	}()
	var out []byte
	for ready := false; !ready; {
		typ, payload, err := pgwire.ReadMessage(br, pgwire.MaxAuthMessage)
		if err != nil {
			return fmt.Errorf("reading from backend: %w", err)
		}
		switch typ {
		case 'K':
			if len(payload) != 8 {
				return fmt.Errorf("%w: BackendKeyData of %d bytes", pgwire.ErrProtocol, len(payload))
			}
			login.pid, login.secret = binary.BigEndian.Uint32(payload), binary.BigEndian.Uint32(payload[4:])
			continue // the gateway's own key goes to the client below
		case 'S':
			name, _, _ := pgwire.CutCString(payload)
			login.status[name] = pgwire.AppendMessage(nil, typ, payload)
		case 'E':
			s.decision, s.reason = decisionBackendRejected, pgwire.ParseError(payload).Message
			_, err := s.conn.Write(pgwire.AppendMessage(out, typ, payload))
			return err
		case 'Z':
			ready = true
			continue // after the key, below
		}
		out = pgwire.AppendMessage(out, typ, payload)
	}
	proxying = true
	return s.proxy(si, login, out)
}

// reuse serves an authenticated client on a pooled backend connection: the
// client gets what a login would have told it, then the session.
func (s *session) reuse(si *topology.ServerInfo, pc *pooledConn, final []byte) error {
	s.authenticated()
	var out []byte
	if final != nil {
		out = pgwire.AuthMessage(pgwire.AuthSASLFinal, final)
	}
	out = append(out, pgwire.AuthMessage(pgwire.AuthOK, nil)...)
	for _, m := range pc.status {
		out = append(out, m...)
	}
	s.reused = true
	return s.proxy(si, pc, out)
}

// proxy finishes the client's login (out, then the gateway's cancel key
// and ReadyForQuery), copies the session, and gives the backend connection
// back to the pool when the client left it idle.
func (s *session) proxy(si *topology.ServerInfo, pc *pooledConn, out []byte) error {
	key := s.g.sessions.newKey(backendKey{server: si.Server.Name, addr: si.Backend, pid: pc.pid, secret: pc.secret})
	defer s.g.sessions.forget(key)
	var k [8]byte
	binary.BigEndian.PutUint32(k[:], key.pid)
	binary.BigEndian.PutUint32(k[4:], key.secret)
	out = pgwire.AppendMessage(out, 'K', k[:])
	out = pgwire.AppendMessage(out, 'Z', []byte{'I'})
	if _, err := s.conn.Write(out); err != nil {
		pc.conn.Close()
		return err
	}
	s.decision = decisionProxied
	s.raw.SetDeadline(time.Time{})
	pc.conn.SetDeadline(time.Time{})
	s.backend, s.backendAddr = pc.conn, si.Backend
	s.g.sessions.startProxy(s)
	defer s.g.sessions.endProxy(s)
	if cur := s.g.snapshot.Load().Servers[si.Server.Name]; cur == nil || cur.Backend != si.Backend {
		// The server moved while this session logged in.
		s.reason = "closed: the server's backend changed (failover) while it logged in"
		pc.conn.Close()
		return nil
	}
	if s.poolKey == nil {
		defer pc.conn.Close()
		err := s.copy(pc.conn, pc.r)
		s.noteMoved()
		return err
	}
	if s.copyPooled(pc.conn, pc.r) && !s.moved.Load() && s.resetForPool(pc) {
		s.g.pool.put(*s.poolKey, pc)
		return nil
	}
	pc.conn.Close()
	s.noteMoved()
	return nil
}

func (s *session) noteMoved() {
	if s.moved.Load() {
		s.reason = "closed: the server's backend changed (failover); the client reconnects to the new one"
	}
}

// authenticated uncounts the session from its address's connections that
// have not finished authenticating (G12).
func (s *session) authenticated() {
	if s.counted {
		s.g.sources.leave(s.client)
		s.counted = false
	}
}

// sameCertificate reports whether the backend's leaf certificate is the one
// the gateway showed the client: then tls-server-end-point channel binding
// computed by the client matches the backend's (passthrough only).
func (s *session) sameCertificate(backend net.Conn) bool {
	tc, ok := backend.(*tls.Conn)
	if _, client := s.conn.(*tls.Conn); !ok || !client {
		return false
	}
	bc := tc.ConnectionState().PeerCertificates
	if len(bc) == 0 {
		return false
	}
	c := s.g.cert.Load()
	return len(c.Certificate) > 0 && sha256.Sum256(c.Certificate[0]) == sha256.Sum256(bc[0].Raw)
}

// relayAuth relays the backend's authentication exchange up to
// AuthenticationOk, keeping channel binding out of the SASL offer unless
// both legs show the same certificate (passthrough, G7). It reports false
// when the backend refused, after relaying the refusal.
func (s *session) relayAuth(backend net.Conn, br *bufio.Reader, sameCert bool) (bool, error) {
	for {
		typ, payload, err := pgwire.ReadMessage(br, pgwire.MaxAuthMessage)
		if err != nil {
			return false, fmt.Errorf("reading from backend: %w", err)
		}
		switch typ {
		case 'E':
			s.decision, s.reason = decisionBackendRejected, pgwire.ParseError(payload).Message
			if s.reason == "SCRAM channel binding negotiation error" && !sameCert {
				// The backend saw the client's "y" flag: the client supports
				// channel binding, and the gateway had to hide it.
				return false, &pgwire.Error{Code: "08P01",
					Message: "SCRAM channel binding cannot cross the gateway to this server in gateway_auth passthrough",
					Detail:  "the backend presents a different TLS certificate than the gateway, so the client's channel binding cannot match it",
					Hint:    "use gateway_auth terminate (the default), in which the gateway authenticates the client itself"}
			}
			_, err := s.conn.Write(pgwire.AppendMessage(nil, typ, payload))
			return false, err
		case 'R':
		default:
			if _, err := s.conn.Write(pgwire.AppendMessage(nil, typ, payload)); err != nil {
				return false, err
			}
			continue
		}
		if len(payload) < 4 {
			return false, fmt.Errorf("%w: short authentication message from the backend", pgwire.ErrProtocol)
		}
		code := binary.BigEndian.Uint32(payload)
		if code == pgwire.AuthSASL && !(sameCert && s.tlsVer != 0) {
			if payload, err = stripChannelBinding(payload); err != nil {
				return false, err
			}
		}
		if _, err := s.conn.Write(pgwire.AppendMessage(nil, typ, payload)); err != nil {
			return false, err
		}
		switch code {
		case pgwire.AuthOK:
			return true, nil
		case pgwire.AuthSASLFinal:
			continue
		case pgwire.AuthCleartext, pgwire.AuthMD5, pgwire.AuthSASL, pgwire.AuthSASLContinue: // the client answers
		default:
			return false, &pgwire.Error{Code: "08P01", Message: fmt.Sprintf("the backend asks for authentication method %d, which the gateway does not relay", code)}
		}
		ctyp, cpayload, err := pgwire.ReadMessage(s.r, pgwire.MaxAuthMessage)
		if err != nil {
			return false, fmt.Errorf("reading from client: %w", err)
		}
		if _, err := backend.Write(pgwire.AppendMessage(nil, ctyp, cpayload)); err != nil {
			return false, err
		}
	}
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
	s.countBytes()
	return nil
}

// countBytes adds the session's copied bytes to the metrics.
func (s *session) countBytes() {
	bytesTotal.WithLabelValues("in").Add(float64(s.bytesIn))
	bytesTotal.WithLabelValues("out").Add(float64(s.bytesOut))
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
	s.server, s.reason = s.g.cancelLocal(k)
	return nil
}

// Cancel delivers a cancel request forwarded from another node (G2a).
func (g *Gateway) Cancel(pid, secret uint32) {
	server, reason := g.cancelLocal(cancelKey{pid, secret})
	g.cfg.Logger.Info().Str("server", server).Str("decision", decisionCancel).Str("reason", reason).Msg("forwarded cancel")
}

// cancelLocal sends the backend's own CancelRequest for a key this node
// handed out, and returns the session's server and what happened (G9).
func (g *Gateway) cancelLocal(k cancelKey) (server, reason string) {
	b, ok := g.sessions.lookup(k)
	if !ok {
		return "", "no session has this cancel key"
	}
	c, err := net.DialTimeout("tcp", b.addr, g.cfg.DialTimeout)
	if err != nil {
		return b.server, err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(g.cfg.DialTimeout))
	if _, err = c.Write(requestPacket(cancelRequestCode, b.pid, b.secret)); err != nil {
		return b.server, err.Error()
	}
	io.Copy(io.Discard, c) // the backend closes the connection once it has read the request
	return b.server, "sent to backend " + b.addr
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
