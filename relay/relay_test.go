package relay

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"
)

// The relay is tested over real TCP connections on loopback: a client, the
// relaying side's two Sockets (one accepted, one dialed), and a server.

func startLoops(t *testing.T) *Loops {
	t.Helper()
	ls, err := Start(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.Stop)
	return ls
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	dialed, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	accepted = <-ch
	if accepted == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { dialed.Close(); accepted.Close() })
	return dialed, accepted
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"relay"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// session is a relayed session: client talks to front, back talks to
// server; front and back are the relaying side's Sockets (with TLS over
// them when withTLS).
type session struct {
	client, server net.Conn
	front, back    *Socket
	legs           [2]Leg
	done           chan Result
}

func newSession(t *testing.T, withTLS bool) *session {
	t.Helper()
	clientEnd, frontEnd := tcpPair(t)
	backEnd, serverEnd := tcpPair(t)
	s := &session{front: NewSocket(frontEnd), back: NewSocket(backEnd), done: make(chan Result, 1)}
	s.legs = [2]Leg{{Socket: s.front, Reader: s.front, Writer: s.front}, {Socket: s.back, Reader: s.back, Writer: s.back}}
	s.client, s.server = clientEnd, serverEnd
	if !withTLS {
		return s
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{testCert(t)}}
	ccfg := &tls.Config{InsecureSkipVerify: true}
	tc, tf := tls.Client(clientEnd, ccfg), tls.Server(s.front, cfg)
	tb, ts := tls.Client(s.back, ccfg), tls.Server(serverEnd, cfg)
	errs := make(chan error, 4)
	for _, c := range []*tls.Conn{tc, tf, tb, ts} {
		go func() { errs <- c.Handshake() }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.client, s.server = tc, ts
	// The front's reader is buffered, as the gateway's is.
	s.legs = [2]Leg{{Socket: s.front, Reader: bufio.NewReaderSize(tf, 512), Writer: tf}, {Socket: s.back, Reader: tb, Writer: tb}}
	return s
}

func (s *session) relay(t *testing.T, ls *Loops, end func(int, bool) bool) {
	t.Helper()
	if err := ls.Relay(Pair{Legs: s.legs, End: end, Done: func(r Result) { s.done <- r }}); err != nil {
		t.Fatal(err)
	}
}

func (s *session) result(t *testing.T) Result {
	t.Helper()
	select {
	case r := <-s.done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end")
		return Result{}
	}
}

// TestRelayBothWaysThenHalfClose: messages go both ways, the client's EOF
// reaches the server, the server's answer after it still reaches the
// client, and the relay ends when both directions have.
// SPEC: G13
func TestRelayBothWaysThenHalfClose(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[withTLS], func(t *testing.T) {
			ls := startLoops(t)
			s := newSession(t, withTLS)
			// Bytes sent before the relay starts sit in the layers' buffers
			// or the kernel: they must come through too.
			if _, err := s.client.Write([]byte("early")); err != nil {
				t.Fatal(err)
			}
			s.relay(t, ls, nil)
			got := make([]byte, 5)
			if _, err := io.ReadFull(s.server, got); err != nil || string(got) != "early" {
				t.Fatalf("server read %q, %v", got, err)
			}
			for i := range 100 {
				msg := bytes.Repeat([]byte{byte(i)}, 1+i*37)
				if _, err := s.client.Write(msg); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(s.server, buf); err != nil || !bytes.Equal(buf, msg) {
					t.Fatalf("message %d to server: %v", i, err)
				}
				if _, err := s.server.Write(msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(s.client, buf); err != nil || !bytes.Equal(buf, msg) {
					t.Fatalf("message %d to client: %v", i, err)
				}
			}
			closeWrite(t, s.client)
			if b, err := io.ReadAll(s.server); err != nil || len(b) != 0 {
				t.Fatalf("server after the client's close: %q, %v", b, err)
			}
			if _, err := s.server.Write([]byte("bye")); err != nil {
				t.Fatal(err)
			}
			closeWrite(t, s.server)
			if b, err := io.ReadAll(s.client); err != nil || string(b) != "bye" {
				t.Fatalf("client read %q, %v after the server's close", b, err)
			}
			r := s.result(t)
			if r.Err != nil {
				t.Fatalf("relay ended with %v", r.Err)
			}
			want := int64(5)
			for i := range 100 {
				want += int64(1 + i*37)
			}
			if r.Bytes[0] != want || r.Bytes[1] != want-5+3 {
				t.Fatalf("bytes %v, want [%d %d]", r.Bytes, want, want-5+3)
			}
			s.front.Close()
			s.back.Close()
		})
	}
}

func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().(*net.TCPConn).CloseWrite()
	}
}

// TestRelayBackpressure: 16 MiB through TLS to a server that reads slowly
// arrive whole and in order; the relay queues at most what one read gave.
// SPEC: G13
func TestRelayBackpressure(t *testing.T) {
	ls := startLoops(t)
	s := newSession(t, true)
	s.relay(t, ls, nil)
	data := make([]byte, 16<<20)
	rand.Read(data)
	go func() {
		s.client.Write(data)
		closeWrite(t, s.client)
	}()
	h := sha256.New()
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := s.server.Read(buf)
		h.Write(buf[:n])
		total += n
		if total < 1<<20 {
			time.Sleep(time.Millisecond) // slow at first: the relay must wait
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) || total != len(data) {
		t.Fatalf("server got %d bytes, not what was sent", total)
	}
	closeWrite(t, s.server)
	if r := s.result(t); r.Err != nil || r.Bytes[0] != int64(len(data)) {
		t.Fatalf("result %+v", r)
	}
	// One read is at most 16 KiB of plaintext; as TLS records, a little more.
	if s.back.maxPending == 0 || s.back.maxPending > 17<<10 {
		t.Fatalf("at most %d bytes pending toward the slow server: want some, and no more than one read's worth", s.back.maxPending)
	}
}

// TestWaitingSessionsHoldNoGoroutine: 200 relayed sessions waiting for
// their next message add no goroutine; each still answers afterwards.
// SPEC: G13
func TestWaitingSessionsHoldNoGoroutine(t *testing.T) {
	ls := startLoops(t)
	before := runtime.NumGoroutine()
	var sessions []*session
	for range 200 {
		s := newSession(t, true)
		s.relay(t, ls, nil)
		sessions = append(sessions, s)
	}
	time.Sleep(100 * time.Millisecond)
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Fatalf("200 waiting sessions hold %d goroutines", n)
	}
	for _, s := range sessions {
		s.client.Write([]byte("ping"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(s.server, got); err != nil || string(got) != "ping" {
			t.Fatalf("a waiting session did not pass its next message: %q, %v", got, err)
		}
	}
}

// TestRelayCloseEndsIt: closing a relayed Socket from another goroutine
// (a failover that closes the sessions of a moved server) ends the relay
// with net.ErrClosed; Done closes the sockets and both peers see it.
// SPEC: G13
func TestRelayCloseEndsIt(t *testing.T) {
	ls := startLoops(t)
	s := newSession(t, false)
	s.relay(t, ls, nil)
	s.back.Close()
	r := s.result(t)
	if !errors.Is(r.Err, net.ErrClosed) {
		t.Fatalf("relay ended with %v, want net.ErrClosed", r.Err)
	}
	s.front.Close()
	s.back.Close()
	s.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client still connected after the relay was closed")
	}
}

// TestRelayStopThenReattach: Scan stops the client's direction at a
// marker (the gateway stops at a client's Terminate), End ends the relay,
// and the backend's Socket goes back to Go's poller and works as a
// net.Conn (a pooled backend connection).
// SPEC: G13
func TestRelayStopThenReattach(t *testing.T) {
	ls := startLoops(t)
	s := newSession(t, true)
	s.legs[0].Scan = func(b []byte) (int, bool) {
		if i := bytes.IndexByte(b, 'X'); i >= 0 {
			return i, true
		}
		return len(b), false
	}
	s.relay(t, ls, func(from int, stopped bool) bool { return from == 0 && stopped })
	s.client.Write([]byte("helloX"))
	r := s.result(t)
	if r.Err != nil || r.Bytes[0] != 5 {
		t.Fatalf("result %+v, want 5 bytes and no error", r)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(s.server, got); err != nil || string(got) != "hello" {
		t.Fatalf("server read %q, %v", got, err)
	}
	if err := s.back.Reattach(); err != nil {
		t.Fatal(err)
	}
	tb := s.legs[1].Writer.(*tls.Conn)
	tb.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tb.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s.server, got); err != nil || string(got) != "again" {
		t.Fatalf("server read %q, %v after reattach", got, err)
	}
	s.server.Write([]byte("reply"))
	if _, err := io.ReadFull(tb, got); err != nil || string(got) != "reply" {
		t.Fatalf("reattached read %q, %v", got, err)
	}
	s.front.Close()
	tb.Close()
}

// TestRelayStopEndsEveryPair: stopping the loops ends every relay.
// SPEC: G13
func TestRelayStopEndsEveryPair(t *testing.T) {
	ls, err := Start(1)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, false)
	s.relay(t, ls, nil)
	ls.Stop()
	if r := s.result(t); !errors.Is(r.Err, net.ErrClosed) {
		t.Fatalf("relay ended with %v, want net.ErrClosed", r.Err)
	}
	s.front.Close()
	s.back.Close()
}

// TestAwaitReadableThenReattach: a socket waits in a loop until its peer
// sends, comes back to Go's poller and reads what was sent; a socket closed
// while it waits ends the wait with net.ErrClosed.
// SPEC: G13
func TestAwaitReadableThenReattach(t *testing.T) {
	ls := startLoops(t)
	peer, mine := tcpPair(t)
	sock := NewSocket(mine)
	woke := make(chan error, 1)
	if err := ls.Await(sock, func(err error) { woke <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		t.Fatalf("woke before the peer sent anything: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	peer.Write([]byte("next"))
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not woken by the peer's bytes")
	}
	if err := sock.Reattach(); err != nil {
		t.Fatal(err)
	}
	sock.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(sock, got); err != nil || string(got) != "next" {
		t.Fatalf("read %q, %v after reattach", got, err)
	}
	sock.Close()

	_, other := tcpPair(t)
	sock = NewSocket(other)
	if err := ls.Await(sock, func(err error) { woke <- err }); err != nil {
		t.Fatal(err)
	}
	sock.Close()
	select {
	case err := <-woke:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("closed while waiting: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a socket closed while waiting did not end its wait")
	}
	sock.Close()
}

// TestLoopsAddTheirPs: a busy loop keeps a P while it waits for events, so
// Start adds one per loop to GOMAXPROCS and Stop, however often called,
// takes exactly those back; relays work meanwhile, and garbage collections
// (which stop every P) complete while a loop is busy.
// SPEC: G13
func TestLoopsAddTheirPs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	ls, err := Start(3)
	if err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != before+3 {
		ls.Stop()
		t.Fatalf("GOMAXPROCS %d after starting 3 loops, want %d", got, before+3)
	}
	s := newSession(t, true)
	s.relay(t, ls, nil)
	for i := range 200 {
		msg := []byte(fmt.Sprintf("message %d", i))
		buf := make([]byte, len(msg))
		if _, err := s.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s.server, buf); err != nil || !bytes.Equal(buf, msg) {
			t.Fatalf("message %d to server: %q, %v", i, buf, err)
		}
		if i%50 == 0 {
			runtime.GC()
		}
	}
	ls.Stop()
	ls.Stop()
	if r := s.result(t); !errors.Is(r.Err, net.ErrClosed) {
		t.Fatalf("relay ended with %v on Stop, want net.ErrClosed", r.Err)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d after Stop, want %d as before Start", got, before)
	}
}
