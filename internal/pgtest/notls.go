package pgtest

import (
	"io"
	"net"
	"testing"
)

// ListenNoTLS listens on addr and answers every SSLRequest with N, as a
// PostgreSQL without TLS does: a real TCP endpoint for health probes, whose
// closing is a real failure. Close the listener to take it down.
func ListenNoTLS(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var b [8]byte
				if _, err := io.ReadFull(c, b[:]); err == nil {
					c.Write([]byte{'N'})
				}
			}()
		}
	}()
	return l, nil
}

// NoTLS is ListenNoTLS for a test: it fails the test when it cannot listen
// and closes the listener when the test ends.
func NoTLS(t testing.TB, addr string) net.Listener {
	t.Helper()
	l, err := ListenNoTLS(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
