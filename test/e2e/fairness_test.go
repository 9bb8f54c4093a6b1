package e2e

import (
	"bufio"
	"crypto/tls"
	be "encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// TestOneAddressCannotLockOthersOut: one address holds its cap of idle
// connections; its next one is refused, and everyone else still connects,
// also behind a trusted PROXY v2 balancer, per real client address.
// SPEC: G12 G10
func TestOneAddressCannotLockOthersOut(t *testing.T) {
	dir := t.TempDir()
	tlsDir, pgs := backends(t, dir, 1)
	topo := strings.NewReplacer("127.0.0.1:55432", pgs[0].Addr, "127.0.0.1:55433", pgs[0].Addr).Replace(devTopology(t))
	writeFile(t, dir, "topology.yaml", topo)
	dnsPort, gwPort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	n := startNode(t, dir, fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    pgplane topology.yaml {
        gateway 127.0.0.1:%d
        gateway_tls dev %s
        gateway_auth_user pgplane_auth auth.pgpass
        gateway_max_connections_per_source 20
        gateway_trusted_proxies 127.0.0.7/32
    }
}
`, dnsPort, gwPort, tlsDir), fmt.Sprintf("127.0.0.1:%d", dnsPort), "")
	gw := fmt.Sprintf("127.0.0.1:%d", gwPort)
	conninfo := fmt.Sprintf("host=reports-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d sslmode=verify-full sslrootcert=%s/ca.crt user=app dbname=appdb", gwPort, tlsDir)

	// 127.0.0.5 opens its cap of connections and sends nothing.
	for i := 0; i < 20; i++ {
		hold(t, "127.0.0.5", gw, nil)
	}
	time.Sleep(200 * time.Millisecond) // the gateway has accepted them
	if msg := startupError(t, "127.0.0.5", gw, nil); !strings.Contains(msg, "too many connections from 127.0.0.5 that have not finished authenticating") {
		t.Fatalf("the address over its cap must be refused: %q", msg)
	}
	if out, err := psql(t, conninfo, "SELECT 'in'"); err != nil || out != "in" {
		t.Fatalf("another address must connect while one holds its cap: %v %s", err, out)
	}

	// Behind the balancer (127.0.0.7), the cap is per real client.
	real5 := netip.MustParseAddr("203.0.113.5")
	for i := 0; i < 20; i++ {
		hold(t, "127.0.0.7", gw, &real5)
	}
	time.Sleep(200 * time.Millisecond)
	if msg := startupError(t, "127.0.0.7", gw, &real5); !strings.Contains(msg, "too many connections from 203.0.113.5") {
		t.Fatalf("a real client over its cap must be refused: %q", msg)
	}
	real6 := netip.MustParseAddr("203.0.113.6")
	if msg := startupError(t, "127.0.0.7", gw, &real6); !strings.Contains(msg, `no firewall rule of server "reports-db" admits client address 203.0.113.6`) {
		t.Fatalf("another real client behind the same balancer passes the cap (and meets the firewall): %q", msg)
	}
	waitFor(t, "the refusals in the log", 5*time.Second, func() bool {
		return strings.Count(n.log.String(), `"decision":"refused_capacity"`) == 2
	})
}

// hold opens a connection from src, with a PROXY v2 header for client when
// it is set, and sends nothing else; the test's end closes it.
func hold(t *testing.T, src, gw string, client *netip.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if client != nil {
		if _, err := c.Write(proxyV2(*client, netip.MustParseAddr("127.0.0.1"))); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// startupError connects as psql would (SSLRequest, TLS, startup packet)
// and returns the message of the ErrorResponse the gateway answers with.
func startupError(t *testing.T, src, gw string, client *netip.Addr) string {
	t.Helper()
	c := hold(t, src, gw, client)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pgwire.SSLRequest()); err != nil {
		t.Fatal(err)
	}
	var s [1]byte
	if _, err := c.Read(s[:]); err != nil || s[0] != 'S' {
		t.Fatalf("want S to the SSLRequest: %q %v", s[0], err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "reports-db.postgres.database.azure.com", InsecureSkipVerify: true}) // #nosec G402 -- the test reads the refusal, not the certificate
	if _, err := tc.Write(pgwire.StartupMessage("user", "app", "database", "appdb")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(tc)
	for {
		typ, payload, err := pgwire.ReadMessage(r, 1<<16)
		if err != nil {
			t.Fatalf("want an ErrorResponse: %v", err)
		}
		if typ == 'E' {
			return pgwire.ParseError(payload).Message
		}
		if typ == 'R' {
			return "asked to authenticate"
		}
	}
}

// proxyV2 is a PROXY protocol v2 header for a TCP over IPv4 connection.
func proxyV2(src, dst netip.Addr) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21, 0x11, 0, 12)
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	return be.BigEndian.AppendUint16(be.BigEndian.AppendUint16(b, 40000), 5432)
}
