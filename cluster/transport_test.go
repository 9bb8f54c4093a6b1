package cluster

import (
	"io"
	"log"
	"net"
	"testing"
	"time"
)

// TestGossipStreamsLeaveFromTheBindAddress: memberlist's TCP streams
// (push/pull, joins) leave from the address gossip is bound to, as its UDP
// packets do; bound to every address, the kernel picks.
// SPEC: C1
func TestGossipStreamsLeaveFromTheBindAddress(t *testing.T) {
	peer, err := net.Listen("tcp", "127.0.0.42:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, tc := range []struct{ bind, want string }{{"127.0.0.41", "127.0.0.41"}, {"0.0.0.0", "127.0.0.1"}} {
		tr, err := newBoundTransport(tc.bind, 0, log.New(io.Discard, "", 0))
		if err != nil {
			t.Fatal(err)
		}
		c, err := tr.DialTimeout(peer.Addr().String(), time.Second)
		if err != nil {
			tr.Shutdown()
			t.Fatal(err)
		}
		in, err := peer.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if a := in.RemoteAddr().(*net.TCPAddr); !a.IP.Equal(net.ParseIP(tc.want)) {
			t.Errorf("bound to %s: the stream came from %s, want %s", tc.bind, a.IP, tc.want)
		}
		in.Close()
		c.Close()
		tr.Shutdown()
	}
}
