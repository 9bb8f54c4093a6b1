package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/pgtest"
)

// gatewayNode starts a PostgreSQL with its own certificate and an
// appliance whose gateway fronts it, with dev TLS.
func gatewayNode(t *testing.T) (n *node, dnsPort, gwPort int, ca string) {
	n, dnsPort, gwPort, ca, _ = gatewayNodeMetrics(t)
	return
}

// gatewayNodeMetrics is gatewayNode that also returns the metrics address.
func gatewayNodeMetrics(t *testing.T) (n *node, dnsPort, gwPort int, ca, metrics string) {
	t.Helper()
	dir := t.TempDir()
	_, pgs := backends(t, dir, 1)
	pg := pgs[0]
	topo := strings.ReplaceAll(devTopology(t), "127.0.0.1:55432", pg.Addr)
	topo = strings.ReplaceAll(topo, "127.0.0.1:55433", pg.Addr)
	writeFile(t, dir, "topology.yaml", topo)
	dnsPort = freePort(t, "127.0.0.1")
	gwPort = freePort(t, "127.0.0.1")
	metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    prometheus %s
    pgplane topology.yaml {
        gateway 127.0.0.1:%d 127.0.0.2:%d
        gateway_tls dev tls
        gateway_auth_user pgplane_auth auth.pgpass
        node_id 1
    }
}
`, dnsPort, metrics, gwPort, gwPort)
	n = startNode(t, dir, corefile, fmt.Sprintf("127.0.0.1:%d", dnsPort), "")
	m := regexp.MustCompile(`CA certificate (\S+);`).FindStringSubmatch(n.log.String())
	if m == nil {
		t.Fatalf("the appliance must print where the dev CA is:\n%s", n.log.String())
	}
	return n, dnsPort, gwPort, m[1], metrics
}

// backends makes the dev gateway certificate in dir/tls and starts n
// PostgreSQL servers, each presenting a certificate of its own (from
// another CA, as every existing server has): the gateway authenticates
// clients itself, so no backend needs the gateway's key. The servers are
// stopped when the test ends.
func backends(t *testing.T, dir string, n int) (tlsDir string, pgs []*pgtest.Server) {
	t.Helper()
	tlsDir = filepath.Join(dir, "tls")
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com", "*.contoso.private.postgres.database.azure.com"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		pg, err := pgtest.Start("", pgtest.Options{OwnCertificate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Stop(); os.RemoveAll(pg.Dir) })
		pgs = append(pgs, pg)
	}
	return tlsDir, pgs
}

func psql(t *testing.T, conninfo, sql string) (string, error) {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-A", "-t", conninfo, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password, "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// SPEC: D2 G1 G3 G7 G9
func TestPsqlThroughApplianceGateway(t *testing.T) {
	n, dnsPort, gwPort, ca, metrics := gatewayNodeMetrics(t)
	// DNS gives the gateway's active address for the public server.
	r := dig(t, "@127.0.0.1", "-p", fmt.Sprint(dnsPort), "+short", "reports-db.postgres.database.azure.com", "A")
	lines := strings.Fields(r.out)
	addr := lines[len(lines)-1]
	if addr != "127.0.0.1" {
		t.Fatalf("want the gateway address, got %q", r.out)
	}
	conninfo := fmt.Sprintf("host=reports-db.postgres.database.azure.com hostaddr=%s port=%d sslmode=verify-full sslrootcert=%s user=app dbname=appdb application_name=e2e", addr, gwPort, ca)
	out, err := psql(t, conninfo, "SELECT s.ssl, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE pid = pg_backend_pid()")
	if err != nil || out != "t|e2e" {
		t.Fatalf("psql through the gateway: %v\n%s", err, out)
	}
	waitFor(t, "the connection's log line", 5*time.Second, func() bool {
		return strings.Contains(n.log.String(), `"decision":"proxied"`)
	})
	line := regexp.MustCompile(`\{[^\n]*"message":"connection"[^\n]*\}`).FindString(n.log.String())
	for _, field := range []string{`"client":"127.0.0.1"`, `"server":"reports-db"`, `"tls":"TLS 1.3"`, `"bytes_in":`, `"duration":`} {
		if !strings.Contains(line, field) {
			t.Fatalf("log line lacks %s: %s", field, line)
		}
	}
	// Prometheus metrics, through CoreDNS's prometheus plugin.
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`pgplane_gateway_connections_total{decision="proxied",server="reports-db"} 1`, "pgplane_gateway_tls_handshake_seconds_count", `pgplane_gateway_bytes_total{direction="in"}`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	// The standby gateway address does not listen.
	if out, err := psql(t, strings.Replace(conninfo, "hostaddr=127.0.0.1", "hostaddr=127.0.0.2", 1), "SELECT 1"); err == nil {
		t.Fatalf("the secondary address must not accept connections: %s", out)
	}
	// A private server from outside its VNet.
	out, err = psql(t, strings.Replace(conninfo, "reports-db", "orders-db", 1), "SELECT 1")
	if err == nil || !strings.Contains(out, "accepts connections only from its virtual network") {
		t.Fatalf("orders-db from 127.0.0.1: %v\n%s", err, out)
	}
}

// SPEC: G2a
func TestPsqlCancelThroughGateway(t *testing.T) {
	_, _, gwPort, ca := gatewayNode(t)
	conninfo := fmt.Sprintf("host=reports-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d sslmode=verify-full sslrootcert=%s user=app dbname=appdb", gwPort, ca)
	cmd := exec.Command("psql", "-X", conninfo, "-c", "SELECT pg_sleep(60)")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(1500 * time.Millisecond) // let the query start
	cmd.Process.Signal(syscall.SIGINT)  // psql sends a CancelRequest
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the cancel did not end the query")
	}
	if !strings.Contains(out.String(), "canceling statement due to user request") {
		t.Fatalf("want the backend's cancel message:\n%s", out.String())
	}
}
