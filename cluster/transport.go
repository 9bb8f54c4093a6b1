package cluster

import (
	"fmt"
	"log"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// boundTransport is memberlist's NetTransport whose outgoing TCP
// connections (push/pull, fallback probes, joins) leave from the address
// gossip is bound to, as its UDP packets already do. Without it the kernel
// picks their source by route, so on a host with several addresses a
// member's streams could come from an address other than its configured
// one: firewall rules between members would have to allow every address
// of every member, and a cut of one member's address would cut only part
// of its traffic.
type boundTransport struct {
	*memberlist.NetTransport
	local *net.TCPAddr // nil when bound to every address
}

// newBoundTransport listens for gossip on host:port (port 0: one the
// kernel picks).
func newBoundTransport(host string, port int, logger *log.Logger) (*boundTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("gossip transport on %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
	}
	t := &boundTransport{NetTransport: nt}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		t.local = &net.TCPAddr{IP: ip}
	}
	return t, nil
}

// DialTimeout opens a stream to another member from the bound address.
func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if t.local != nil {
		d.LocalAddr = t.local
	}
	return d.Dial("tcp", addr)
}

// DialAddressTimeout is DialTimeout for memberlist's node-aware calls.
func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}
