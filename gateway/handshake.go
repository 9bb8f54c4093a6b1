package gateway

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// The handshake: PROXY v2, TLS (negotiated or direct) and the startup packet.

// startTLS runs the TLS handshake over the connection. Direct TLS must
// negotiate ALPN "postgresql".
func (s *session) startTLS(direct bool) error {
	start := time.Now()
	bc := &bufferedConn{Conn: s.raw, r: s.r}
	tc := tls.Server(bc, s.g.tls)
	if err := tc.Handshake(); err != nil {
		decision := decisionProtocol
		if bc.noCommonVersion {
			decision = decisionTLSVersion
		}
		return (&refusal{decision: decision}).wrapping(fmt.Errorf("TLS handshake: %w", err))
	}
	handshakeSeconds.Observe(time.Since(start).Seconds())
	cs := tc.ConnectionState()
	s.conn, s.r, s.tlsVer, s.sni = tc, bufio.NewReaderSize(tc, sessionReadBuffer), cs.Version, cs.ServerName
	if direct && cs.NegotiatedProtocol != alpnPostgres {
		return &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "direct TLS connection without ALPN protocol \"postgresql\"",
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
		policy := [2]uint16{cfg.MinVersion, 0}
		si := g.snapshot.Load().ServerForHost(hello.ServerName)
		if si != nil {
			policy = [2]uint16{tlsVersion(si.TLS.MinVersion), tlsVersion(si.TLS.MaxVersion)}
		}
		if bc, ok := hello.Conn.(*bufferedConn); ok {
			// The floor the chosen configuration enforces: the server's own
			// (which may allow TLS 1.0), or crypto/tls's default, TLS 1.2.
			lo := policy[0]
			if lo == 0 {
				lo = tls.VersionTLS12
			}
			bc.noCommonVersion = !offersVersion(hello.SupportedVersions, lo, policy[1])
		}
		if si == nil {
			return nil, nil
		}
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

// bufferedConn reads through a bufio.Reader that may hold bytes already read
// from the connection, and from the connection itself once the reader is
// empty (the reader is then dropped: a relayed session's every read would
// otherwise pass through it). noCommonVersion is set by the TLS
// configuration when the client's hello offers no TLS version the server
// allows.
type bufferedConn struct {
	net.Conn
	r               *bufio.Reader
	noCommonVersion bool
}

func (c *bufferedConn) Read(b []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(b)
		}
		c.r = nil
	}
	return c.Conn.Read(b)
}

func (g *Gateway) trustedProxy(a netip.Addr) bool {
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// handshake reads the PROXY v2 header of a trusted balancer, counts the
// connection against its address (G12), negotiates TLS (direct, or after an
// SSLRequest) and returns the startup packet: a StartupMessage or a
// CancelRequest.
//
// A client quiet for parkAfter before a message of the startup phase makes
// it return errPark; it is called again when the client sends, and takes
// up where it stopped.
func (s *session) handshake() (*startupPacket, error) {
	if s.g.trustedProxy(s.client) && !s.proxyRead {
		src, err := readProxyHeader(s.r)
		if err != nil {
			return nil, err
		}
		if src.IsValid() {
			s.client = src
		}
		s.proxyRead = true
	}
	if s.refusal == nil && !s.counted {
		// G12: one address may hold only so many connections that have
		// not finished authenticating, so it cannot lock others out.
		if s.counted = s.g.sources.enter(s.client); !s.counted {
			s.refusal = s.g.tooManyFromSource(s.client)
			s.setDeadline(time.Now().Add(refusalTimeout))
		}
	}
	if !s.sawFirst {
		if s.quiet(parkAfter) {
			return nil, errPark
		}
		if first, err := s.r.Peek(1); errors.Is(err, io.EOF) {
			return nil, &refusal{decision: decisionEmpty, reason: "closed before sending anything"}
		} else if err != nil {
			return nil, err
		} else if s.sawFirst = true; first[0] == 0x16 { // a TLS record: direct TLS (G2)
			if err := s.startTLS(true); err != nil {
				return nil, err
			}
		}
	}
	for {
		if s.quiet(parkAfter) {
			return nil, errPark
		}
		p, err := readStartupPacket(s.r)
		if err != nil {
			return nil, err
		}
		switch p.code {
		case sslRequestCode:
			if s.tlsVer != 0 {
				return nil, fmt.Errorf("%w: SSLRequest inside TLS", pgwire.ErrProtocol)
			}
			if s.g.cfg.TLS == nil {
				if _, err := s.conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			// Bytes after the SSLRequest and before the handshake would be
			// read as if they were encrypted (CVE-2021-23214).
			if s.r.Buffered() > 0 {
				return nil, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "received unencrypted data after SSL request",
					Detail: "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."}
			}
			if _, err := s.conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			if err := s.startTLS(false); err != nil {
				return nil, err
			}
		case gssEncRequestCode:
			if s.r.Buffered() > 0 {
				return nil, &pgwire.Error{Code: pgwire.CodeProtocolViolation, Message: "received unencrypted data after GSSAPI encryption request"}
			}
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		default:
			return p, nil
		}
	}
}

// offersVersion reports whether a client offers a TLS version from lo to hi
// (0: no upper bound).
func offersVersion(offered []uint16, lo, hi uint16) bool {
	for _, v := range offered {
		if v >= lo && (hi == 0 || v <= hi) {
			return true
		}
	}
	return false
}
