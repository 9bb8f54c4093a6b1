package raftstate

import (
	"bufio"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft transport: mutual TLS between members, on one port that carries
// both Raft's RPCs and forwarded writes. Every member derives the same
// certificate authority from the gossip key, and signs a certificate of its
// own with it at start: a peer that does not hold the key cannot complete a
// handshake, in either direction.

// transportName is the name in every member's certificate, checked by both
// sides.
const transportName = "pgplane-raft"

// devKey stands in for the gossip key of a cluster_dev cluster: its
// transport is encrypted but anyone can join, as its gossip is open.
var devKey = []byte("pgplane cluster_dev: not a secret")

// forwardByte opens a connection that carries a forwarded write rather than
// Raft's RPCs, whose first byte is a small RPC type.
const forwardByte = 'F'

// handshakeTimeout bounds an incoming connection's TLS handshake and first
// byte.
const handshakeTimeout = 5 * time.Second

// transportTLS returns the TLS configurations of a member holding key: the
// server side and the client side, both requiring the other's certificate
// to be signed by the authority derived from key.
func transportTLS(key []byte) (server, client *tls.Config, err error) {
	if len(key) == 0 {
		key = devKey
	}
	seed, err := hkdf.Key(sha256.New, key, nil, "pgplane raft transport certificate authority", ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving the Raft transport's authority: %w", err)
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	epoch := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgplane raft authority"},
		NotBefore: epoch, NotAfter: epoch.AddDate(100, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	// Ed25519 signatures are deterministic: every member makes the same
	// authority certificate.
	caDER, err := x509.CreateCertificate(nil, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("raft transport authority: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, fmt.Errorf("raft transport authority: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("raft transport key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, fmt.Errorf("raft transport certificate: %w", err)
	}
	now := time.Now()
	leafTemplate := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: transportName}, DNSNames: []string{transportName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(nil, leafTemplate, ca, pub, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("raft transport certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: priv}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server = &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		MinVersion: tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: transportName,
		MinVersion: tls.VersionTLS13,
	}
	return server, client, nil
}

// streamLayer is raft.StreamLayer over mutual TLS. Its accept loop
// completes each handshake and reads the first byte off Raft's path: a
// forwarded write goes to forward, anything else to Raft.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	// local is where connections to other members leave from: the
	// listening address, unless that is every address (nil). Every Raft
	// packet of a member then comes from its configured address, as its
	// gossip does, which is what firewalls between members allow.
	local   *net.TCPAddr
	server  *tls.Config
	client  *tls.Config
	forward func(net.Conn)
	report  func(error)

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// newStreamLayer listens on bind and accepts until Close.
func newStreamLayer(bind, advertise string, server, client *tls.Config, forward func(net.Conn), report func(error)) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft transport: listening on %s: %w", bind, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", advertise); err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft transport: advertise address %s: %w", advertise, err)
		}
	}
	s := &streamLayer{ln: ln, advertise: adv, server: server, client: client, forward: forward, report: report, conns: make(chan net.Conn), done: make(chan struct{})}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		s.local = &net.TCPAddr{IP: a.IP}
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.report(fmt.Errorf("raft transport: accept: %w", err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.sort(c)
	}
}

// sort completes an incoming connection's handshake and hands it to Raft or
// to forward by its first byte.
func (s *streamLayer) sort(c net.Conn) {
	tc := tls.Server(c, s.server)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.report(fmt.Errorf("raft transport: refused %s: %w", c.RemoteAddr(), err))
		c.Close()
		return
	}
	br := bufio.NewReader(tc)
	first, err := br.Peek(1)
	if err != nil {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	conn := &bufferedConn{Conn: tc, r: br}
	if first[0] == forwardByte {
		br.Discard(1)
		s.forward(conn)
		return
	}
	select {
	case s.conns <- conn:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns the next connection for Raft.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening.
func (s *streamLayer) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close()
	})
	return nil
}

// Addr is the address other members dial.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial opens a TLS connection to another member for Raft.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(string(address), timeout)
}

func (s *streamLayer) dial(address string, timeout time.Duration) (*tls.Conn, error) {
	nd := &net.Dialer{Timeout: timeout}
	if s.local != nil {
		nd.LocalAddr = s.local
	}
	d := &tls.Dialer{NetDialer: nd, Config: s.client}
	c, err := d.Dial("tcp", address)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// bufferedConn is a connection whose first bytes were read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
