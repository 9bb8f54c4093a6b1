package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"github.com/pgplane/pgplane/pgwire"
)

// proxySignature opens every PROXY protocol v2 header.
var proxySignature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readProxyHeader reads the PROXY protocol v2 header that a trusted load
// balancer sends first, and returns the client's source address (G10). A
// LOCAL command (health checks) returns no address. Anything else is refused.
func readProxyHeader(r *bufio.Reader) (netip.Addr, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return netip.Addr{}, err
	}
	return parseProxyHeader(hdr, r)
}

// parseProxyHeader parses a v2 header whose first 16 bytes are hdr; the
// address block is read from r.
func parseProxyHeader(hdr [16]byte, r io.Reader) (netip.Addr, error) {
	if !bytes.Equal(hdr[:12], proxySignature) {
		return netip.Addr{}, fmt.Errorf("%w: connection from a trusted proxy without a PROXY protocol v2 header", pgwire.ErrProtocol)
	}
	if hdr[12]>>4 != 2 {
		return netip.Addr{}, fmt.Errorf("%w: PROXY protocol version %d, want 2", pgwire.ErrProtocol, hdr[12]>>4)
	}
	n := int(binary.BigEndian.Uint16(hdr[14:]))
	if n > 512 {
		return netip.Addr{}, fmt.Errorf("%w: PROXY header of %d bytes", pgwire.ErrProtocol, n)
	}
	block := make([]byte, n)
	if _, err := io.ReadFull(r, block); err != nil {
		return netip.Addr{}, err
	}
	switch cmd := hdr[12] & 0xf; cmd {
	case 0: // LOCAL: the proxy's own connection
		return netip.Addr{}, nil
	case 1: // PROXY
	default:
		return netip.Addr{}, fmt.Errorf("%w: PROXY command %d", pgwire.ErrProtocol, cmd)
	}
	switch family := hdr[13] >> 4; family {
	case 1: // AF_INET: src 4, dst 4, ports 2+2
		if n < 12 {
			return netip.Addr{}, fmt.Errorf("%w: short PROXY IPv4 address block", pgwire.ErrProtocol)
		}
		return netip.AddrFrom4([4]byte(block[:4])), nil
	case 2: // AF_INET6: src 16, dst 16, ports 2+2
		if n < 36 {
			return netip.Addr{}, fmt.Errorf("%w: short PROXY IPv6 address block", pgwire.ErrProtocol)
		}
		return netip.AddrFrom16([16]byte(block[:16])).Unmap(), nil
	default:
		return netip.Addr{}, fmt.Errorf("%w: PROXY address family %d", pgwire.ErrProtocol, family)
	}
}
