package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/relay"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// FuzzStartupPacket: any body parses or fails cleanly, and what parses as a
// startup message encodes back to something that parses the same. SPEC: G8
func FuzzStartupPacket(f *testing.F) {
	f.Add(startup(protocolV3, "user", "app@reports-db", "database", "appdb")[4:])
	f.Add(startup(3<<16|2, "user", "app", "_pq_.x", "1")[4:])
	f.Add(requestPacket(cancelRequestCode, 7, 9)[4:])
	f.Add(requestPacket(sslRequestCode)[4:])
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseStartupPacket(body)
		if err != nil || p.code>>16 != 3 {
			return
		}
		again, err := parseStartupPacket(p.encodeForBackend()[4:])
		if err != nil {
			t.Fatalf("re-encoded startup does not parse: %v", err)
		}
		for _, kv := range p.params {
			if strings.HasPrefix(kv.name, "_pq_.") {
				continue
			}
			if again.get(kv.name) != p.get(kv.name) {
				t.Fatalf("parameter %q changed", kv.name)
			}
		}
	})
}

// FuzzProxyHeader: any header parses or fails cleanly. SPEC: G10 G8
func FuzzProxyHeader(f *testing.F) {
	f.Add(append(append([]byte(nil), proxySignature...), 0x21, 0x11, 0, 12, 203, 0, 113, 5, 127, 0, 0, 1, 0, 1, 0, 2))
	f.Add(append(append([]byte(nil), proxySignature...), 0x20, 0x00, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		readProxyHeader(bufio.NewReader(bytes.NewReader(data)))
	})
}

// FuzzSession feeds arbitrary client bytes to a whole gateway session, TLS
// included: it must end (the handshake timeout bounds it) without a panic.
// The backend address is closed, so nothing leaves the process. SPEC: G8 G2
func FuzzSession(f *testing.F) {
	seeds := [][]byte{
		startup(protocolV3, "user", "app@reports-db", "database", "appdb"),
		append(requestPacket(sslRequestCode), 0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0),
		append(requestPacket(gssEncRequestCode), startup(protocolV3, "user", "app@plain-db")...),
		requestPacket(cancelRequestCode, 3<<24|1, 42),
		{0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	g := fuzzGateway(f, 200*time.Millisecond) // it bounds the sessions waiting for more input
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := tcpPair(t)
		done := make(chan struct{})
		// Some sessions are ones the gateway refuses over its cap: they
		// negotiate, then get the refusal.
		var refusal *pgwire.Error
		if len(data)%5 == 0 {
			refusal = g.tooManyClients()
		}
		go g.serve(relay.NewSocket(server), refusal, func() { close(done) })
		client.Write(data)
		// Half-close: the session sees the end of the input at once instead
		// of waiting for its handshake timeout (which bounds it regardless).
		client.(*net.TCPConn).CloseWrite()
		go io.Copy(io.Discard, client)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("session did not end")
		}
		client.Close()
	})
}

// fuzzGateway makes a gateway with the dev certificate and the fixture
// topology, every backend at a closed address, and the handshake timeout
// given.
func fuzzGateway(f *testing.F, handshakeTimeout time.Duration) *Gateway {
	dir := f.TempDir()
	cert, _, err := DevCertificates(filepath.Join(dir, "tls"), gatewayNames)
	if err != nil {
		f.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	topo, _, err := topology.Parse("fuzz.yaml", []byte(bytes.ReplaceAll([]byte(fixtureTopology), []byte("BACKEND"), []byte(closed))))
	if err != nil {
		f.Fatal(err)
	}
	snap, _ := topology.NewSnapshot(topo, topology.State{}, 1)
	passfile, err := pgtest.WriteAuthPassfile(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	g, err := New(Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, HandshakeTimeout: handshakeTimeout,
		AuthRole: pgtest.AuthRole, AuthPassfile: passfile,
		DialTimeout: 200 * time.Millisecond, Logger: zerolog.New(io.Discard)}, snap)
	if err != nil {
		f.Fatal(err)
	}
	return g
}

// FuzzSessionAfterTLS feeds arbitrary bytes to a gateway session inside a
// TLS connection that a real client negotiated, as every default client
// does: raw bytes (FuzzSession) cannot get past the handshake, so the
// startup, password and cancel messages that come after it are fuzzed
// here. The session must end without a panic. SPEC: G8 G2
func FuzzSessionAfterTLS(f *testing.F) {
	for _, s := range [][]byte{
		startup(protocolV3, "user", "app", "database", "appdb"),
		startup(protocolV3, "user", "app@reports-db", "database", "appdb", "application_name", "fuzz"),
		startup(protocolV3, "user", "app", "options", "-c search_path=x"),
		append(startup(protocolV3, "user", "app"), 'p', 0, 0, 0, 7, 'p', 'w', 0),
		requestPacket(cancelRequestCode, 3<<24|1, 42),
		startup(3<<16|2, "user", "app", "_pq_.x", "1"),
		requestPacket(sslRequestCode),
	} {
		f.Add(s)
	}
	// The client's close_notify ends a session waiting for more input; the
	// handshake must not time out on a fuzzing worker starved of CPU.
	g := fuzzGateway(f, 5*time.Second)
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := tcpPair(t)
		defer client.Close()
		done := make(chan struct{})
		go g.serve(relay.NewSocket(server), nil, func() { close(done) })
		client.SetDeadline(time.Now().Add(10 * time.Second))
		client.Write(requestPacket(sslRequestCode))
		var answer [1]byte
		if _, err := io.ReadFull(client, answer[:]); err != nil || answer[0] != 'S' {
			t.Fatalf("the SSLRequest was answered %q (%v), want S", answer[:], err)
		}
		tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true, ServerName: "reports-db.postgres.database.azure.com"})
		began := time.Now()
		if err := tc.Handshake(); err != nil {
			if took := time.Since(began); took >= 4*time.Second {
				// No input has been sent: the gateway's handshake timeout
				// ran out on a worker starved of CPU (a run beside others).
				t.Skipf("the TLS handshake took %s (%v); the input was not tried", took.Round(time.Millisecond), err)
			}
			t.Fatalf("TLS handshake: %v", err)
		}
		tc.Write(data)
		tc.CloseWrite() // close_notify: the session sees the end of the input
		go io.Copy(io.Discard, tc)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end")
		}
	})
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return client, server
}
