package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/pgwire"
)

// slowConn pauses before each write: a client slow to send each message.
type slowConn struct {
	net.Conn
	pause time.Duration
}

func (c *slowConn) Write(b []byte) (int, error) {
	time.Sleep(c.pause)
	return c.Conn.Write(b)
}

// TestQuietClientsWaitWithoutGoroutines: a client quiet in the startup
// phase (before its first byte, after its TLS handshake) waits in a relay
// loop, not in a goroutine of its own: 60 sessions that stop after TLS add
// no goroutine each, and still end at the handshake timeout, logged; a
// client that pauses before every message still logs in.
// SPEC: G8 G13
func TestQuietClientsWaitWithoutGoroutines(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.HandshakeTimeout = 2 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg, err := f.pgxConfig("reports-db", pgtest.User, pgtest.Password, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowConn{Conn: c, pause: 2 * parkAfter}, nil
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("a client pausing %s before each message must log in: %s", 2*parkAfter, sqlstate(err))
	}
	if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)

	before := runtime.NumGoroutine()
	var quiet []net.Conn
	defer func() {
		for _, c := range quiet {
			c.Close()
		}
	}()
	for range 60 {
		raw, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		quiet = append(quiet, raw)
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		raw.Write(pgwire.SSLRequest())
		if b := make([]byte, 1); func() bool { _, err := io.ReadFull(raw, b); return err != nil || b[0] != 'S' }() {
			t.Fatal("no S for the SSLRequest")
		}
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "reports-db.postgres.database.azure.com"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * parkAfter)
	if n := runtime.NumGoroutine() - before; n > 20 {
		t.Fatalf("60 sessions quiet after TLS hold %d goroutines", n)
	}
	for i, raw := range quiet {
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, raw); err != nil {
			t.Fatalf("quiet session %d: want the gateway to close it at the handshake timeout, got %v", i, err)
		}
	}
	if !f.logHas(`"decision":"refused_timeout"`) {
		t.Fatalf("a quiet session closed at the timeout must be logged:\n%s", f.log.String())
	}
	if strings.Count(f.log.String(), `"decision":"refused_timeout"`) < 60 {
		t.Fatalf("want 60 sessions logged as timed out:\n%s", f.log.String())
	}
}
