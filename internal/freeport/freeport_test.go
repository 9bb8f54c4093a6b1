package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPickIsBelowTheEphemeralRangeAndBindable picks many ports: each must be
// new, below the ephemeral range, and bindable for TCP and UDP.
func TestPickIsBelowTheEphemeralRangeAndBindable(t *testing.T) {
	top := ephemeralLow()
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p, err := Pick("127.0.0.1", "127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p >= top {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, top)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("picked port %d is not bindable: %v", p, err)
		}
		l.Close()
	}
}

// TestPickSkipsATakenPort holds a port and checks that free reports it.
func TestPickSkipsATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if free(l.Addr().(*net.TCPAddr).Port, []string{"127.0.0.1"}) {
		t.Fatal("a port held by a listener was reported free")
	}
}
