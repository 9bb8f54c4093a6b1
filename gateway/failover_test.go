package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgplane/pgplane/topology"

	"github.com/jackc/pgx/v5/pgconn"
)

// SPEC: C6 G1
func TestFlipClosesConnectionsToTheOldBackend(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old, err := f.pgxConnect(ctx, "ha-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	other, err := f.pgxConnect(ctx, "reports-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if got := serverPort(ctx, t, old); got != fmt.Sprint(f.pg.Port) {
		t.Fatalf("ha-db starts on its primary backend: port %s", got)
	}

	f.gw.Update(f.snapshot(topology.State{FailedOver: map[string]bool{"ha-db": true}}))
	if _, err := old.Exec(ctx, "SELECT 1").ReadAll(); err == nil {
		t.Fatal("a connection to the backend its server moved away from must be closed")
	}
	if got := serverPort(ctx, t, other); got != fmt.Sprint(f.pg.Port) {
		t.Fatalf("a connection of another server on the same backend must stay: %s", got)
	}
	if !f.logHas("closed: the server's backend changed (failover)") {
		t.Fatalf("the log must say why the connection closed:\n%s", f.log.String())
	}
	again, err := f.pgxConnect(ctx, "ha-db", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	if got := serverPort(ctx, t, again); got != fmt.Sprint(sharedPG.gwCert.Port) {
		t.Fatalf("a reconnect reaches the new backend: port %s", got)
	}
}

// serverPort asks the backend behind a connection for its port.
func serverPort(ctx context.Context, t *testing.T, c *pgconn.PgConn) string {
	t.Helper()
	rs, err := c.Exec(ctx, "SELECT inet_server_port()").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return string(rs[0].Rows[0][0])
}
