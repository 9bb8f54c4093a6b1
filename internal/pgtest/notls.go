package pgtest

import (
	"io"
	"net"
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
