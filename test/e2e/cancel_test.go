package e2e

import (
	"context"
	be "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/pgtest"

	"github.com/jackc/pgx/v5/pgconn"
)

// SPEC: G2a C1
func TestCancelArrivingAtAnotherNode(t *testing.T) {
	dir := t.TempDir()
	tlsDir, pgs := backends(t, dir, 1)
	pg := pgs[0]
	topo := fmt.Sprintf(`regions: [{name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}]
servers:
  - {name: sales-db, region: eastus2, access: public, backends: {primary: "%s"}, firewallRules: [{name: lo, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}]}
`, pg.Addr)
	dns := freePort(t, "127.0.0.11", "127.0.0.12")
	gw := freePort(t, "127.0.0.21", "127.0.0.32")
	g1, g2 := freePort(t, "127.0.0.11"), freePort(t, "127.0.0.12")
	// n2 serves 127.0.0.32, an address of no region: always listening.
	for i, listen := range []string{"127.0.0.21", "127.0.0.32"} {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		os.MkdirAll(ndir, 0o755)
		writeFile(t, ndir, "topology.yaml", topo)
		startNode(t, ndir, fmt.Sprintf(`.:%d {
    bind 127.0.0.1%d
    pgplane topology.yaml {
        gateway %s:%d
        gateway_tls dev %s
        gateway_auth_user pgplane_auth auth.pgpass
        node_id %d
        cluster_name n%d
        cluster_members n1 n2
        cluster_bind 127.0.0.1%d:%d
        cluster_join 127.0.0.11:%d 127.0.0.12:%d
        cluster_dev
    }
}
`, dns, i+1, listen, gw, tlsDir, i+1, i+1, i+1, []int{g1, g2}[i], g1, g2), fmt.Sprintf("127.0.0.1%d:%d", i+1, dns), "")
	}
	time.Sleep(time.Second) // let the two nodes find each other
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=sales-db.postgres.database.azure.com port=%d user=app password=%s dbname=appdb sslmode=verify-full sslrootcert=%s",
		gw, pgtest.Password, filepath.Join(tlsDir, gateway.DevCAFile)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.21"}, nil }
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if gateway.NodeOf(c.PID()) != 1 {
		t.Fatalf("the session's key must name node 1, got %d", gateway.NodeOf(c.PID()))
	}
	done := make(chan error, 1)
	go func() { done <- c.ExecParams(ctx, "SELECT pg_sleep(60)", nil, nil, nil, nil).Read().Err }()
	time.Sleep(500 * time.Millisecond)
	// The cancel goes to node 2.
	raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.32:%d", gw))
	if err != nil {
		t.Fatal(err)
	}
	packet := make([]byte, 16)
	be.BigEndian.PutUint32(packet, 16)
	be.BigEndian.PutUint32(packet[4:], 80877102)
	be.BigEndian.PutUint32(packet[8:], c.PID())
	copy(packet[12:], c.SecretKey())
	raw.Write(packet)
	io.Copy(io.Discard, raw)
	raw.Close()
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("want the query canceled (57014), got %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the cancel sent to node 2 never reached node 1's backend")
	}
}
