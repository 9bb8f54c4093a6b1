package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/topology"

	"github.com/jackc/pgx/v5/pgconn"
)

// exec runs SQL on a pgconn and returns the first column of the last row.
func exec1(ctx context.Context, t *testing.T, c *pgconn.PgConn, sql string) string {
	t.Helper()
	rs, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	last := rs[len(rs)-1]
	if len(last.Rows) == 0 {
		return ""
	}
	return string(last.Rows[len(last.Rows)-1][0])
}

// closeToPool closes a client and waits until its backend connection is
// back in the pool (the gateway resets it after the client has gone).
func (f *fixture) closeToPool(ctx context.Context, c *pgconn.PgConn) {
	f.t.Helper()
	before := f.gw.pool.idleCount()
	c.Close(ctx)
	for deadline := time.Now().Add(5 * time.Second); f.gw.pool.idleCount() <= before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			f.t.Fatal("the backend connection never went back to the pool")
		}
	}
}

// SPEC: G7
func TestPooledConnectionIsResetAndReused(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pid := exec1(ctx, t, first, "SET work_mem = '77MB'; CREATE TEMP TABLE leftover (x int); SELECT pg_advisory_lock(42); SELECT pg_backend_pid()")
	f.closeToPool(ctx, first) // Terminate: the backend connection goes back to the pool

	second, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got := exec1(ctx, t, second, "SELECT pg_backend_pid()"); got != pid {
		t.Fatalf("the second client must get the pooled backend %s, got %s", pid, got)
	}
	if got := exec1(ctx, t, second, "SHOW work_mem"); got == "77MB" {
		t.Fatal("a pooled connection must be reset (DISCARD ALL): work_mem kept")
	}
	if got := exec1(ctx, t, second, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"); got != "0" {
		t.Fatal("a pooled connection must release advisory locks")
	}
	if got := exec1(ctx, t, second, "SELECT count(*) FROM pg_class WHERE relname = 'leftover' AND relpersistence = 't'"); got != "0" {
		t.Fatal("a pooled connection must drop temporary tables")
	}
	if second.ParameterStatus("server_version") == "" {
		t.Fatal("a client of a pooled connection must get the ParameterStatus messages of a login")
	}

	// A client that leaves a transaction open does not give its connection
	// back: the next one gets a new backend.
	exec1(ctx, t, second, "BEGIN")
	second.Close(ctx)
	third, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close(ctx)
	if got := exec1(ctx, t, third, "SELECT pg_backend_pid()"); got == pid {
		t.Fatal("a connection left in a transaction must not be pooled")
	}

	// The gateway still checks every client's password.
	cfg, _ := f.pgxConfig("reports-db", pgtest.User, "wrong", "127.0.0.1")
	if _, err := pgconn.ConnectConfig(ctx, cfg); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("a wrong password must be refused with a pooled connection waiting: %v", err)
	}
}

// pooledBackend connects a client to server, notes its backend's process
// ID and waits until the backend connection is pooled.
func (f *fixture) pooledBackend(ctx context.Context, server string) string {
	f.t.Helper()
	c, err := f.pgxConnect(ctx, server, "127.0.0.1")
	if err != nil {
		f.t.Fatal(err)
	}
	pid := exec1(ctx, f.t, c, "SELECT pg_backend_pid()")
	f.closeToPool(ctx, c)
	return pid
}

// SPEC: G2a
func TestCancelOnAPooledConnection(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid := f.pooledBackend(ctx, "reports-db")
	second, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(ctx)
	if exec1(ctx, t, second, "SELECT pg_backend_pid()") != pid {
		t.Fatal("setup: the second client must reuse the first one's backend")
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		second.CancelRequest(ctx)
	}()
	_, err = second.Exec(ctx, "SELECT pg_sleep(10)").ReadAll()
	if !strings.HasPrefix(sqlstate(err), "57014") {
		t.Fatalf("a cancel through the gateway must reach the pooled backend: %v", err)
	}
}

// SPEC: C6
func TestFailoverEmptiesThePool(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid := f.pooledBackend(ctx, "ha-db")
	appName := func() string {
		out, _ := f.pg.Psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid)
		return out
	}
	if appName() != "1" {
		t.Fatal("setup: the pooled backend connection must be open")
	}
	f.gw.Update(f.snapshot(topology.State{FailedOver: map[string]bool{"ha-db": true}}))
	for deadline := time.Now().Add(5 * time.Second); appName() != "0"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a failover must close the server's pooled connections to the old backend")
		}
	}
}

// FuzzFrames: the message boundaries found in a stream do not depend on
// how the stream is cut into reads.
func FuzzFrames(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"), 3)
	f.Add([]byte("X\x00\x00\x00\x04"), 1)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		starts := func(chunks ...[]byte) (out []byte, stopAt int) {
			fr := frames{onStart: func(typ byte) { out = append(out, typ) }}
			off := 0
			for _, c := range chunks {
				if at := fr.scan(c, 'X'); at >= 0 {
					return out, off + at
				}
				off += len(c)
			}
			return out, -1
		}
		whole, stopWhole := starts(stream)
		if cut < 0 {
			cut = -cut
		}
		k := 0
		if len(stream) > 0 {
			k = cut % (len(stream) + 1)
		}
		split, stopSplit := starts(stream[:k], stream[k:])
		if string(whole) != string(split) || stopWhole != stopSplit {
			t.Fatalf("cut at %d: %q/%d, whole: %q/%d", k, split, stopSplit, whole, stopWhole)
		}
	})
}

// SPEC: G1
func TestBackendEndingASessionEndsTheClients(t *testing.T) {
	f := newFixture(t, nil)
	done := make(chan string, 1)
	go func() {
		out, _ := f.psql(f.conninfo("reports-db", "application_name=victim"), "SELECT pg_sleep(30)")
		done <- out
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := f.pg.Psql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'victim'")
		if out == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session never reached its backend")
		}
	}
	select {
	case out := <-done:
		if !strings.Contains(out, "terminating connection due to administrator command") {
			t.Fatalf("psql must see the backend's reason: %s", out)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("psql still waits after its backend ended the session: the gateway must close the client's side")
	}
}

// SPEC: G7
func TestPooledConnectionEndedByTheBackendIsNotHandedOut(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid := f.pooledBackend(ctx, "reports-db")
	// The backend ends the pooled session while it waits in the pool.
	if out, err := f.pg.Psql("postgres", "SELECT pg_terminate_backend("+pid+")"); err != nil || out != "t" {
		t.Fatalf("terminate: %v %s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	second, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(ctx)
	if got := exec1(ctx, t, second, "SELECT pg_backend_pid()"); got == pid {
		t.Fatal("a pooled connection its backend ended must not be handed out")
	}
}
