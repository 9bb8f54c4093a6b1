package raftstate

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestRaftDialsFromItsBindAddress: a member's connections to the others
// leave from the address its Raft transport listens on, not from whatever
// address the kernel's route picks, so every Raft packet of a member comes
// from its configured address (and a cut of that address cuts all of it).
// SPEC: C5
func TestRaftDialsFromItsBindAddress(t *testing.T) {
	peer, err := net.Listen("tcp", "127.0.0.32:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	s, err := newStreamLayer("127.0.0.31:0", "", &tls.Config{}, &tls.Config{}, func(c net.Conn) { c.Close() }, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	from := make(chan net.Addr, 1)
	go func() {
		c, err := peer.Accept()
		if err != nil {
			from <- nil
			return
		}
		from <- c.RemoteAddr()
		c.Close()
	}()
	// The handshake fails (the peer is no member); the connection's source
	// is what counts.
	s.dial(peer.Addr().String(), time.Second)
	select {
	case a := <-from:
		if ta, ok := a.(*net.TCPAddr); !ok || !ta.IP.Equal(net.ParseIP("127.0.0.31")) {
			t.Fatalf("Raft's connection came from %v, want 127.0.0.31 (the address it listens on)", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection reached the peer")
	}
}
