package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/pgwire"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/topology"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialFrom opens a TCP connection to the gateway from a chosen loopback
// source address.
func (f *fixture) dialFrom(src string) net.Conn {
	f.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// startup encodes a startup message with the given protocol version.
func startup(version uint32, params ...string) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[4:], version)
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// readError reads messages until an ErrorResponse and returns its fields.
func readError(t *testing.T, r io.Reader) map[byte]string {
	t.Helper()
	br := bufio.NewReader(r)
	for {
		typ, payload, err := pgwire.ReadMessage(br, 1<<20)
		if err != nil {
			t.Fatalf("want an ErrorResponse, got %v", err)
		}
		if typ != 'E' {
			continue
		}
		fields := map[byte]string{}
		for len(payload) > 1 {
			v, rest, _ := pgwire.CutCString(payload[1:])
			fields[payload[0]] = v
			payload = rest
		}
		return fields
	}
}

func (f *fixture) clientTLS(serverName string, alpn ...string) *tls.Config {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(f.caFile)
	if err != nil {
		f.t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{ServerName: serverName, RootCAs: pool, NextProtos: alpn}
}

// SPEC: G2 G8
func TestPlaintextAfterSSLRequestIsProtocolViolation(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dialFrom("127.0.0.1")
	// SSLRequest and a plaintext startup message in one write.
	c.Write(append(requestPacket(sslRequestCode), startup(protocolV3, "user", "app@reports-db")...))
	e := readError(t, c)
	if e['C'] != "08P01" || !strings.Contains(e['M'], "unencrypted data after SSL request") {
		t.Fatalf("want 08P01, got %v", e)
	}
}

// SPEC: G2
func TestGSSENCRequestAnsweredN(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dialFrom("127.0.0.1")
	c.Write(requestPacket(gssEncRequestCode))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("want N, got %q %v", b[0], err)
	}
	// The connection goes on: SSLRequest, then TLS.
	c.Write(requestPacket(sslRequestCode))
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("want S, got %q %v", b[0], err)
	}
	tc := tls.Client(c, f.clientTLS("reports-db.postgres.database.azure.com"))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Write(startup(protocolV3, "user", "app", "database", "appdb"))
	typ, _, err := pgwire.ReadMessage(bufio.NewReader(tc), 1<<20)
	if err != nil || typ != 'R' {
		t.Fatalf("want the backend's authentication request, got %q %v", typ, err)
	}
}

// SPEC: G2
func TestDirectTLSNeedsALPN(t *testing.T) {
	f := newFixture(t, nil)
	tc := tls.Client(f.dialFrom("127.0.0.1"), f.clientTLS("reports-db.postgres.database.azure.com", "postgresql"))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Write(startup(protocolV3, "user", "app", "database", "appdb"))
	if typ, _, err := pgwire.ReadMessage(bufio.NewReader(tc), 1<<20); err != nil || typ != 'R' {
		t.Fatalf("direct TLS with ALPN: want R, got %q %v", typ, err)
	}
	tc = tls.Client(f.dialFrom("127.0.0.1"), f.clientTLS("reports-db.postgres.database.azure.com"))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if e := readError(t, tc); e['C'] != "08P01" || !strings.Contains(e['M'], "ALPN") {
		t.Fatalf("direct TLS without ALPN: want 08P01, got %v", e)
	}
}

// SPEC: G2
func TestNegotiateProtocolVersion(t *testing.T) {
	f := newFixture(t, nil)
	tc := tls.Client(f.dialFrom("127.0.0.1"), f.clientTLS("reports-db.postgres.database.azure.com", "postgresql"))
	tc.Write(startup(3<<16|2, "user", "app", "database", "appdb", "_pq_.shiny", "on"))
	br := bufio.NewReader(tc)
	typ, payload, err := pgwire.ReadMessage(br, 1<<20)
	if err != nil || typ != 'v' {
		t.Fatalf("want NegotiateProtocolVersion, got %q %v", typ, err)
	}
	if minor, n := binary.BigEndian.Uint32(payload), binary.BigEndian.Uint32(payload[4:]); minor != 0 || n != 1 || string(payload[8:len(payload)-1]) != "_pq_.shiny" {
		t.Fatalf("NegotiateProtocolVersion payload %q", payload)
	}
	if typ, _, err := pgwire.ReadMessage(br, 1<<20); err != nil || typ != 'R' {
		t.Fatalf("then the authentication request, got %q %v", typ, err)
	}
}

// SPEC: G8
func TestMalformedStartupRefused(t *testing.T) {
	f := newFixture(t, nil)
	for name, packet := range map[string][]byte{
		"over 10000 bytes": startup(protocolV3, "user", strings.Repeat("x", 10001)),
		"no terminator":    {0, 0, 0, 12, 0, 3, 0, 0, 'u', 's', 'e', 'r'},
		"length too small": {0, 0, 0, 4},
		"protocol 2":       startup(2 << 16),
	} {
		t.Run(name, func(t *testing.T) {
			c := f.dialFrom("127.0.0.1")
			c.Write(packet)
			if e := readError(t, c); e['C'] != "08P01" {
				t.Fatalf("want 08P01, got %v", e)
			}
		})
	}
}

// SPEC: G8
func TestSlowHandshakeTimesOutOthersUnaffected(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	idle := f.dialFrom("127.0.0.1")
	idle.Write([]byte{0, 0}) // half a length, then nothing
	// Another client is served meanwhile.
	if out, err := f.psql(f.conninfo("reports-db", ""), "SELECT 42"); err != nil || out != "42" {
		t.Fatalf("another session: %v %s", err, out)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(idle)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the gateway must close a handshake slower than its timeout")
	}
	waitLog(t, f, `"decision":"refused_timeout"`)
}

// SPEC: G8
func TestConnectionCap(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxConnections = 2 })
	f.dialFrom("127.0.0.1")
	f.dialFrom("127.0.0.1")
	time.Sleep(100 * time.Millisecond) // let the gateway accept both
	// The refusal comes after TLS and the startup packet, where psql shows
	// it (libpq hides an error sent in answer to its SSLRequest).
	out, err := f.psql(f.conninfo("reports-db", ""), "SELECT 1")
	if err == nil || !strings.Contains(out, "FATAL:  sorry, too many clients already") || !strings.Contains(out, "gateway_max_connections") {
		t.Fatalf("want PostgreSQL's refusal over the cap, as psql shows it: %v\n%s", err, out)
	}
	waitLog(t, f, `"decision":"refused_capacity"`)
}

// SPEC: G12 G8
func TestConnectionCapPerSource(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxConnectionsPerSource = 3 })
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		idle = append(idle, f.dialFrom("127.0.0.1"))
	}
	time.Sleep(100 * time.Millisecond) // let the gateway accept them
	out, err := f.psql(f.conninfo("reports-db", ""), "SELECT 1")
	if err == nil || !strings.Contains(out, "too many connections from 127.0.0.1 that have not finished authenticating") {
		t.Fatalf("the address over its cap must be refused, clearly: %v\n%s", err, out)
	}
	// Every other address still connects.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := f.pgxConnect(ctx, "orders-db", "127.0.1.10")
	if err != nil {
		t.Fatalf("another address must connect: %v", err)
	}
	c.Close(ctx)
	// Authenticated sessions do not count: with one idle connection gone,
	// psql gets in, and stays connected while the address opens another.
	idle[0].Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, err := f.psql(f.conninfo("reports-db", ""), "SELECT 1"); err == nil && out == "1" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("a slot of 127.0.0.1 must free when its idle connection closes: %v %s", err, out)
		}
	}
}

// pgxConnect connects with pgx (a second real client) from a source address.
func (f *fixture) pgxConnect(ctx context.Context, server, src string) (*pgconn.PgConn, error) {
	cfg, err := f.pgxConfig(server, pgtest.User, pgtest.Password, src)
	if err != nil {
		return nil, err
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

// pgxConfig is a pgx configuration for server through the gateway, as user,
// from a source address.
func (f *fixture) pgxConfig(server, user, password, src string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s.postgres.database.azure.com port=%d user=%s password=%s dbname=%s sslmode=verify-full sslrootcert=%s",
		server, f.port, user, password, pgtest.Database, f.caFile))
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cfg.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, f.addr)
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	return cfg, nil
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message + " | " + pe.Hint + " | " + pe.Detail
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// SPEC: G5 F3
func TestFirewallBySourceAddress(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	// reports-db admits 127.0.0.1 only (and 203.0.113.1-9).
	_, err := f.pgxConnect(ctx, "reports-db", "127.0.9.9")
	if got := sqlstate(err); !strings.HasPrefix(got, "28000") || !strings.Contains(got, "127.0.9.9") || !strings.Contains(got, `"reports-db"`) ||
		!strings.Contains(got, "firewall-rule create --server reports-db") {
		t.Fatalf("want 28000 naming client and server with a hint, got %s", got)
	}
	// plain-db has the 0.0.0.0 rule: VNet addresses and datacenter ranges.
	for _, src := range []string{"127.0.3.7", "127.0.200.9"} {
		c, err := f.pgxConnect(ctx, "plain-db", src)
		if err != nil {
			t.Fatalf("the 0.0.0.0 rule must admit %s: %s", src, sqlstate(err))
		}
		c.Close(ctx)
	}
	if _, err := f.pgxConnect(ctx, "plain-db", "127.0.99.1"); !strings.HasPrefix(sqlstate(err), "28000") {
		t.Fatalf("an address outside the cloud: %s", sqlstate(err))
	}
}

// SPEC: G5
func TestRuleChangeHoldsForNextConnection(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.pgxConnect(ctx, "reports-db", "127.0.9.9"); err == nil {
		t.Fatal("127.0.9.9 must be refused before the rule")
	}
	f.topo = strings.Replace(f.topo, "{name: proxied-office,", "{name: new-rule, startIpAddress: 127.0.9.0, endIpAddress: 127.0.9.255}\n      - {name: proxied-office,", 1)
	f.gw.Update(f.snapshot(topology.State{}))
	c, err := f.pgxConnect(ctx, "reports-db", "127.0.9.9")
	if err != nil {
		t.Fatalf("after the rule: %s", sqlstate(err))
	}
	c.Close(ctx)
}

// SPEC: G6 T3
func TestPrivateServerOnlyFromItsVNetAndPeers(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, src := range []string{"127.0.1.10", "127.0.2.10"} { // app-vnet, peered hub-vnet
		c, err := f.pgxConnect(ctx, "orders-db", src)
		if err != nil {
			t.Fatalf("from %s: %s", src, sqlstate(err))
		}
		c.Close(ctx)
	}
	for _, src := range []string{"127.0.0.1", "127.0.3.10"} { // outside, unpeered far-vnet
		_, err := f.pgxConnect(ctx, "orders-db", src)
		if got := sqlstate(err); !strings.HasPrefix(got, "28000") || !strings.Contains(got, "virtual network") || !strings.Contains(got, "127.0.1.0/24 (app-vnet)") {
			t.Fatalf("from %s: want 28000 naming the VNets, got %s", src, got)
		}
	}
	// The private zone's name routes too.
	cfg := f.conninfo("orders-db", "")
	cfg = strings.Replace(cfg, "orders-db.postgres.database.azure.com", "orders-db.contoso.private.postgres.database.azure.com", 1)
	if out, err := f.psql(cfg, "SELECT 1"); err == nil || !strings.Contains(out, "virtual network") {
		t.Fatalf("psql from 127.0.0.1 to the private name: %v %s", err, out)
	}
}

// SPEC: G2a G9
func TestCancelReachesBackendWithGatewayKey(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	c, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(sqlstate(err))
	}
	defer c.Close(ctx)
	res := c.ExecParams(ctx, "SELECT pg_backend_pid()", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	backendPID := string(res.Rows[0][0])
	if fmt.Sprint(c.PID()) == backendPID {
		t.Fatalf("the client's key must be the gateway's, not the backend's (pid %s)", backendPID)
	}
	if NodeOf(c.PID()) != 3 {
		t.Fatalf("the key must carry the node id 3, got %d", NodeOf(c.PID()))
	}
	done := make(chan error, 1)
	go func() {
		done <- c.ExecParams(ctx, "SELECT pg_sleep(60)", nil, nil, nil, nil).Read().Err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !strings.HasPrefix(sqlstate(err), "57014") {
			t.Fatalf("want the query canceled (57014), got %s", sqlstate(err))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the cancel did not reach the backend")
	}
	// The cancel's own log line names the server (G9).
	var found bool
	for _, l := range f.logLines() {
		found = found || strings.Contains(l, `"decision":"cancel"`) && strings.Contains(l, `"server":"reports-db"`)
	}
	if !found {
		t.Fatalf("want a cancel line naming reports-db:\n%s", strings.Join(f.logLines(), "\n"))
	}
}

// SPEC: G10
func TestProxyProtocolFromTrustedAddress(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32")}
	})
	header := func(src string) []byte {
		h := append([]byte(nil), proxySignature...)
		h = append(h, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4, 12 bytes
		s := netip.MustParseAddr(src).As4()
		h = append(h, s[:]...)
		h = append(h, 127, 0, 0, 1, 0x12, 0x34, 0x15, 0x38)
		return h
	}
	send := func(src, from string) map[byte]string {
		c := f.dialFrom(from)
		c.Write(header(src))
		c.Write(startup(protocolV3, "user", "app@locked-db", "database", "appdb"))
		return readError(t, c)
	}
	// From the trusted balancer, the client 203.0.113.5 is inside locked-db's
	// rule; plaintext is then what stops it, which proves the rule passed.
	if e := send("203.0.113.5", "127.0.0.5"); !strings.Contains(e['M'], "requires TLS") {
		t.Fatalf("the rule must apply to the real client address: %v", e)
	}
	if e := send("198.18.0.1", "127.0.0.5"); !strings.Contains(e['M'], "client address 198.18.0.1") {
		t.Fatalf("a refused real client must be named: %v", e)
	}
	// From an untrusted address the header is not accepted.
	if e := send("203.0.113.5", "127.0.0.6"); e['C'] != "08P01" {
		t.Fatalf("a PROXY header from an untrusted address must be refused: %v", e)
	}
}

// SPEC: G1
func TestSecondaryAddressListensOnlyWhenActive(t *testing.T) {
	f := newFixture(t, nil)
	f.gw.Stop()
	primary, secondary := fmt.Sprintf("127.0.0.1:%d", f.port), fmt.Sprintf("127.0.0.2:%d", f.port)
	cfg := f.gw.cfg
	cfg.Listen = []string{primary, secondary}
	gw, err := New(cfg, f.snapshot(topology.State{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()
	accepts := func(addr string) bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !accepts(primary) || accepts(secondary) {
		t.Fatalf("at first only the primary accepts: %v", gw.Listening())
	}
	if err := gw.Update(f.snapshot(topology.State{ActiveGateway: map[string]int{"eastus2": 1}})); err != nil {
		t.Fatal(err)
	}
	if accepts(primary) || !accepts(secondary) {
		t.Fatalf("after activation only the secondary accepts: %v", gw.Listening())
	}
}

func waitLog(t *testing.T, f *fixture, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
