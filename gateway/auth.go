package gateway

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/topology"
)

// Authentication: the gateway authenticates the client itself (terminate)
// or relays the backend's exchange (passthrough) (G7).

// backendThenAuthenticate is gateway_auth passthrough: it connects to the
// backend and relays its own authentication exchange, then finishes the
// backend's login.
func (s *session) backendThenAuthenticate(si *topology.ServerInfo, p *startupPacket) (*pooledConn, []byte, error) {
	backend, br, err := s.dialBackend(si, p)
	if err != nil {
		return nil, nil, err
	}
	if err := s.relayAuth(backend, br, s.sameCertificate(backend)); err != nil {
		backend.Close()
		return nil, nil, err
	}
	return s.finishLogin(backend, br, nil)
}

// authenticateThenBackend is gateway_auth terminate: it checks the
// client's SCRAM proof (or MD5 answer) against the role's secret looked up
// on the backend, then takes a pooled backend connection, or logs in to the
// backend as the role with what the proof revealed (G7).
func (s *session) authenticateThenBackend(si *topology.ServerInfo, p *startupPacket) (*pooledConn, []byte, error) {
	if s.user == "" {
		return nil, nil, &pgwire.Error{Code: pgwire.CodeInvalidAuthorization, Message: "no PostgreSQL user name specified in startup packet"}
	}
	authRole := si.AuthRole
	if authRole == "" {
		authRole = s.g.cfg.AuthRole
	}
	sec, err := s.g.verifiers.lookup(si.Backend(), authRole, s.user)
	if err != nil {
		return nil, nil, refuse(decisionAuthLookup, &pgwire.Error{Code: pgwire.CodeConnectionFailure, Message: fmt.Sprintf("server %q cannot check passwords now: the gateway could not look up the role on the backend", si.Server.Name),
			Hint: "try again in a moment; if it persists, the gateway's log names the cause (the backend, or the auth role's login and lookup function)"}).wrapping(err)
	}
	var cred pgwire.Credentials
	var final []byte
	if sec.md5 != "" {
		cred, err = s.md5Exchange(sec.md5)
	} else {
		cred, final, err = s.scramExchange(sec)
	}
	if errors.Is(err, pgwire.ErrAuthFailed) {
		return nil, nil, s.authFailed(si, authRole, sec)
	}
	if err != nil {
		return nil, nil, err
	}
	s.g.throttle.Succeeded(s.client.String())
	var out []byte
	if final != nil {
		out = pgwire.AuthMessage(pgwire.AuthSASLFinal, final)
	}
	out = append(out, pgwire.AuthMessage(pgwire.AuthOK, nil)...)
	if s.g.pool != nil {
		s.poolKey = &poolKey{server: si.Server.Name, backend: si.Backend(), params: p.sessionKey()}
		if pc := s.g.pool.get(*s.poolKey); pc != nil {
			// A pooled connection: the client gets what a login would
			// have told it.
			s.authenticated()
			s.reused = true
			for _, m := range pc.status {
				out = append(out, m...)
			}
			return pc, out, nil
		}
	}
	backend, br, err := s.dialBackend(si, p)
	if err != nil {
		return nil, nil, err
	}
	if err := pgwire.Authenticate(backend, br, cred); err != nil {
		backend.Close()
		var pe *pgwire.Error
		if errors.As(err, &pe) {
			if pe.Code == pgwire.CodeInvalidPassword {
				s.g.verifiers.forget(si.Backend(), authRole, s.user)
			}
			return nil, nil, refuse(decisionBackendRejected, pe).wrapping(err)
		}
		return nil, nil, refuse(decisionBackendRejected, &pgwire.Error{Code: pgwire.CodeConnectionFailure, Message: fmt.Sprintf("server %q: the gateway could not log in to the backend as %q", si.Server.Name, s.user),
			Detail: err.Error()}).wrapping(err)
	}
	return s.finishLogin(backend, br, out)
}

// authFailed refuses a wrong password, or a role that does not exist, with
// PostgreSQL's own words for both; repeated failures from one address are
// answered more and more slowly (G7).
func (s *session) authFailed(si *topology.ServerInfo, authRole string, sec secret) error {
	s.g.verifiers.forget(si.Backend(), authRole, s.user)
	reason := "password does not match"
	if sec.mock {
		reason = "mock authentication: " + sec.why
	}
	if d, _ := s.g.throttle.Failed(s.client.String()); d > 0 {
		reason += fmt.Sprintf("; answered after %v (repeated failures from this address)", d)
		time.Sleep(d)
	}
	return refuse(decisionAuthFailed, &pgwire.Error{Code: pgwire.CodeInvalidPassword, Message: `password authentication failed for user "` + s.user + `"`}).because(reason)
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
		return pgwire.Credentials{}, nil, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "malformed SASLInitialResponse message"}
	}
	data := rest[4:]
	if n := int32(binary.BigEndian.Uint32(rest)); n < 0 || int(n) != len(data) {
		return pgwire.Credentials{}, nil, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "malformed SASLInitialResponse message"}
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
		return nil, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: fmt.Sprintf("expected password response, got message type %d", typ)}
	}
	return payload, nil
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
// both legs show the same certificate (passthrough, G7). When the backend
// refuses, it relays the refusal and returns it.
func (s *session) relayAuth(backend net.Conn, br *bufio.Reader, sameCert bool) error {
	for {
		typ, payload, err := pgwire.ReadMessage(br, pgwire.MaxAuthMessage)
		if err != nil {
			return fmt.Errorf("reading from backend: %w", err)
		}
		switch typ {
		case 'E':
			reason := pgwire.ParseError(payload).Message
			if reason == "SCRAM channel binding negotiation error" && !sameCert {
				// The backend saw the client's "y" flag: the client supports
				// channel binding, and the gateway had to hide it.
				return refuse(decisionBackendRejected, &pgwire.Error{Code: pgwire.CodeProtocolViolation,
					Message: "SCRAM channel binding cannot cross the gateway to this server in gateway_auth passthrough",
					Detail:  "the backend presents a different TLS certificate than the gateway, so the client's channel binding cannot match it",
					Hint:    "use gateway_auth terminate (the default), in which the gateway authenticates the client itself"}).because(reason)
			}
			if _, err := s.conn.Write(pgwire.AppendMessage(nil, typ, payload)); err != nil {
				return err
			}
			return refuse(decisionBackendRejected, nil).because(reason) // relayed as the backend sent it
		case 'R':
		default:
			if _, err := s.conn.Write(pgwire.AppendMessage(nil, typ, payload)); err != nil {
				return err
			}
			continue
		}
		if len(payload) < 4 {
			return fmt.Errorf("%w: short authentication message from the backend", pgwire.ErrProtocol)
		}
		code := binary.BigEndian.Uint32(payload)
		if code == pgwire.AuthSASL && !(sameCert && s.tlsVer != 0) {
			if payload, err = stripChannelBinding(payload); err != nil {
				return err
			}
		}
		if _, err := s.conn.Write(pgwire.AppendMessage(nil, typ, payload)); err != nil {
			return err
		}
		switch code {
		case pgwire.AuthOK:
			return nil
		case pgwire.AuthSASLFinal:
			continue
		case pgwire.AuthCleartext, pgwire.AuthMD5, pgwire.AuthSASL, pgwire.AuthSASLContinue: // the client answers
		default:
			return &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: fmt.Sprintf("the backend asks for authentication method %d, which the gateway does not relay", code)}
		}
		ctyp, cpayload, err := pgwire.ReadMessage(s.r, pgwire.MaxAuthMessage)
		if err != nil {
			return fmt.Errorf("reading from client: %w", err)
		}
		if _, err := backend.Write(pgwire.AppendMessage(nil, ctyp, cpayload)); err != nil {
			return err
		}
	}
}
