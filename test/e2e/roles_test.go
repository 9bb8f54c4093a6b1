package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/pgtest"
)

// rolesTopology: ledger, a public HA server on a real primary and its
// streaming standby, with failover parameters the test sets.
const rolesTopology = `regions:
  - {name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}
servers:
  - name: ledger
    region: eastus2
    access: public
    highAvailability: true
    backends: {primary: "PRIMARY", standby: "STANDBY"}
    parameters: PARAMS
    firewallRules: [{name: lo, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}]
`

// roleCluster is three appliance nodes (n3 a witness) in front of a
// primary and its streaming standby.
type roleCluster struct {
	t                *testing.T
	primary, standby *pgtest.Server
	nodes            []*node
	gwPort           int
	admin            string // n2's admin API
	ca               string
}

func startRoleCluster(t *testing.T, params string) *roleCluster {
	t.Helper()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com"}); err != nil {
		t.Fatal(err)
	}
	c := &roleCluster{t: t, ca: filepath.Join(tlsDir, gateway.DevCAFile)}
	var err error
	if c.primary, err = pgtest.Start("", pgtest.Options{OwnCertificate: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.primary.Destroy)
	if out, err := c.primary.Psql(pgtest.Database, "CREATE TABLE ledger (v int); GRANT ALL ON ledger TO "+pgtest.User); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if c.standby, err = c.primary.StartStandby(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.standby.Destroy)
	topo := strings.NewReplacer("PRIMARY", c.primary.Addr, "STANDBY", c.standby.Addr, "PARAMS", params).Replace(rolesTopology)
	key := make([]byte, 32)
	rand.Read(key)
	dnsPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	c.gwPort = freePort(t, "127.0.0.21", "127.0.0.22")
	adminPort := freePort(t, "127.0.0.12")
	c.admin = fmt.Sprintf("http://127.0.0.12:%d", adminPort)
	var gossip []string
	for i := 1; i <= 3; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1%d:%d", i, freePort(t, fmt.Sprintf("127.0.0.1%d", i))))
	}
	for i := 0; i < 3; i++ {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		os.MkdirAll(ndir, 0o755)
		writeFile(t, ndir, "topology.yaml", topo)
		writeFile(t, ndir, "gossip.key", base64.StdEncoding.EncodeToString(key))
		props := "cluster_monitor_user pgplane_auth auth.pgpass" // n3, the witness
		if i < 2 {
			props = fmt.Sprintf("gateway 127.0.0.2%d:%d\n        gateway_tls dev %s\n        gateway_auth_user pgplane_auth auth.pgpass\n        node_id %d", i+1, c.gwPort, tlsDir, i+1)
		}
		if i == 1 {
			props += fmt.Sprintf("\n        admin 127.0.0.12:%d", adminPort)
		}
		corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1%d
    pgplane topology.yaml {
        %s
        cluster_name n%d
        cluster_members n1 n2 n3
        cluster_bind %s
        cluster_join %s
        cluster_key_file gossip.key
        cluster_gateway_port %d
    }
}
`, dnsPort, i+1, props, i+1, gossip[i], strings.Join(gossip, " "), c.gwPort)
		c.nodes = append(c.nodes, startNode(t, ndir, corefile, fmt.Sprintf("127.0.0.1%d:%d", i+1, dnsPort), ""))
	}
	c.waitShow("every member to see the primary as primary", 15*time.Second, func(v api.ClusterView) bool {
		return len(v.Roles["backend/ledger/primary"]) == 3 && len(v.Roles["backend/ledger/standby"]) == 3
	})
	return c
}

// sql runs SQL on ledger through the gateway with psql.
func (c *roleCluster) sql(q string) (string, error) {
	return psql(c.t, fmt.Sprintf("host=ledger.postgres.database.azure.com hostaddr=127.0.0.21 port=%d sslmode=verify-full sslrootcert=%s user=app dbname=appdb connect_timeout=3", c.gwPort, c.ca), q)
}

// show is `pgplanectl cluster show --output json` on n2.
func (c *roleCluster) show() api.ClusterView {
	c.t.Helper()
	out, code := pgplanectlAt(c.t, c.admin, "cluster", "show", "--output", "json")
	var v api.ClusterView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		c.t.Fatalf("cluster show: %d %s", code, out)
	}
	return v
}

func (c *roleCluster) waitShow(what string, limit time.Duration, cond func(api.ClusterView) bool) {
	c.t.Helper()
	waitFor(c.t, what, limit, func() bool { return cond(c.show()) })
}

// replayed waits until a standby has replayed the row v. Replication is
// asynchronous: a row not yet streamed when the primary crashes is lost, as
// on any asynchronous standby, whatever pgplane does.
func (c *roleCluster) replayed(standby *pgtest.Server, v int) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("the standby to replay row %d", v), 10*time.Second, func() bool {
		out, _ := standby.Psql(pgtest.Database, fmt.Sprintf("SELECT count(*) FROM ledger WHERE v = %d", v))
		return out == "1"
	})
}

func decision(v api.ClusterView, key string) (value int, ok bool) {
	for _, d := range v.Decisions {
		if d.Key == key {
			return d.Value, true
		}
	}
	return 0, false
}

func hasAlarm(v api.ClusterView, kind string) bool {
	for _, a := range v.Alarms {
		if a.Kind == kind {
			return true
		}
	}
	return false
}

// TestPromoteAuto: a freeze is ridden out; a crash is followed by a
// promotion and writes through the same name; the old primary restarted as
// a primary is fenced and reported; rebuilt as a standby, it takes the name
// back when the new primary fails.
// SPEC: C6 C2 C3 C4
func TestPromoteAuto(t *testing.T) {
	c := startRoleCluster(t, "{pgplane.promote: auto, pgplane.promote_grace: 3s}")
	if out, err := c.sql("INSERT INTO ledger VALUES (1)"); err != nil {
		t.Fatalf("a write through the gateway: %v %s", err, out)
	}

	// A 2-second freeze of the primary: no promotion, no flip.
	if err := c.primary.Freeze(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := c.primary.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "writes after the freeze", 15*time.Second, func() bool {
		_, err := c.sql("INSERT INTO ledger VALUES (2)")
		return err == nil
	})
	time.Sleep(3 * time.Second) // past the grace, had it started
	v := c.show()
	if _, ok := decision(v, "server/ledger"); ok {
		t.Fatalf("a freeze shorter than the grace must not flip: %+v", v.Decisions)
	}
	if _, ok := decision(v, "promote/ledger"); ok {
		t.Fatalf("a freeze shorter than the grace must not promote: %+v", v.Decisions)
	}
	if out, _ := c.standby.Psql("postgres", "SELECT pg_is_in_recovery()"); out != "t" {
		t.Fatal("the standby must still be in recovery")
	}

	// The primary crashes: pgplane promotes the standby and the name
	// follows; the rows written before are there.
	c.replayed(c.standby, 2)
	c.primary.Crash()
	crashed := time.Now()
	waitFor(t, "a write through the gateway after the crash", 30*time.Second, func() bool {
		_, err := c.sql("INSERT INTO ledger VALUES (3)")
		return err == nil
	})
	t.Logf("write availability after the crash: %s", time.Since(crashed).Round(10*time.Millisecond))
	if out, err := c.sql("SELECT string_agg(v::text, ',' ORDER BY v) || ' ' || inet_server_port() FROM ledger"); err != nil || out != fmt.Sprintf("1,2,3 %d", c.standby.Port) {
		t.Fatalf("want the rows on the promoted standby: %v %q", err, out)
	}
	v = c.show()
	if p, ok := decision(v, "promote/ledger"); !ok || p != 1 {
		t.Fatalf("the promotion must be a decision: %+v", v.Decisions)
	}
	if f, ok := decision(v, "fence/ledger"); !ok || f != 0 {
		t.Fatalf("the old primary must be fenced: %+v", v.Decisions)
	}

	// The old primary restarts as a primary: never routed to, and reported.
	if err := c.primary.Restart(); err != nil {
		t.Fatal(err)
	}
	c.waitShow("the split brain alarm", 15*time.Second, func(v api.ClusterView) bool { return hasAlarm(v, "split_brain") })
	for i := 0; i < 5; i++ {
		if out, err := c.sql("SELECT inet_server_port()"); err != nil || out != fmt.Sprint(c.standby.Port) {
			t.Fatalf("a fenced old primary must never be routed to: %v %s", err, out)
		}
	}
	if !strings.Contains(c.nodes[0].log.String(), "split brain: both backends of ledger claim to be primary") {
		t.Fatal("the split brain must be in the log")
	}
	if out, code := pgplanectlAt(t, c.admin, "server", "failback", "--name", "ledger"); code != 1 || !strings.Contains(out, "fenced") {
		t.Fatalf("a failback to the fenced primary must be refused: %d %s", code, out)
	}

	// Rebuilt as a standby of the new primary, it is unfenced; when the new
	// primary crashes, pgplane promotes it and the name fails back.
	if err := c.primary.Rebuild(c.standby); err != nil {
		t.Fatal(err)
	}
	c.waitShow("the fence to lift and the alarm to clear", 15*time.Second, func(v api.ClusterView) bool {
		f, _ := decision(v, "fence/ledger")
		return f == -1 && len(v.Alarms) == 0
	})
	if out, err := c.sql("INSERT INTO ledger VALUES (4)"); err != nil {
		t.Fatalf("writes go on: %v %s", err, out)
	}
	c.replayed(c.primary, 4)
	c.standby.Crash()
	waitFor(t, "a write after failing back", 30*time.Second, func() bool {
		_, err := c.sql("INSERT INTO ledger VALUES (5)")
		return err == nil
	})
	if out, err := c.sql("SELECT string_agg(v::text, ',' ORDER BY v) || ' ' || inet_server_port() FROM ledger"); err != nil || out != fmt.Sprintf("1,2,3,4,5 %d", c.primary.Port) {
		t.Fatalf("want every row on the old primary again: %v %q", err, out)
	}
}

// TestPromoteNever: with an external HA manager, the name stays on a dead
// primary rather than move to a standby in recovery, and follows the
// standby once someone promotes it.
// SPEC: C6
func TestPromoteNever(t *testing.T) {
	c := startRoleCluster(t, "{}")
	if out, err := c.sql("INSERT INTO ledger VALUES (1)"); err != nil {
		t.Fatalf("a write through the gateway: %v %s", err, out)
	}
	c.replayed(c.standby, 1)
	c.primary.Crash()
	c.waitShow("every member to see the primary down", 10*time.Second, func(v api.ClusterView) bool {
		return len(v.Down["backend/ledger/primary"]) == 3
	})
	time.Sleep(2 * time.Second) // several probe rounds with the primary down
	v := c.show()
	if _, ok := decision(v, "server/ledger"); ok {
		t.Fatalf("the name must not move to a standby in recovery: %+v", v.Decisions)
	}
	if out, _ := c.standby.Psql("postgres", "SELECT pg_is_in_recovery()"); out != "t" {
		t.Fatal("with promote never pgplane must not promote")
	}
	// The HA manager promotes the standby: the name follows.
	if err := c.standby.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	waitFor(t, "a write through the gateway after the promotion", 15*time.Second, func() bool {
		_, err := c.sql("INSERT INTO ledger VALUES (2)")
		return err == nil
	})
	t.Logf("from the promotion to a write through the gateway: %s", time.Since(promoted).Round(10*time.Millisecond))
	if out, err := c.sql("SELECT string_agg(v::text, ',' ORDER BY v) || ' ' || inet_server_port() FROM ledger"); err != nil || out != fmt.Sprintf("1,2 %d", c.standby.Port) {
		t.Fatalf("want both rows on the promoted standby: %v %q", err, out)
	}
	// A quorum moved the name; the third member's next role probe sees the
	// promotion too (its probe round may end after the write above).
	var out string
	waitFor(t, "every member to see the promoted standby as primary", 5*time.Second, func() bool {
		var code int
		out, code = pgplanectlAt(t, c.admin, "cluster", "show")
		return code == 0 && strings.Contains(out, "n1 primary, n2 primary, n3 primary")
	})
	for _, want := range []string{"backend/ledger/standby", "the name follows the primary"} {
		if !strings.Contains(out, want) {
			t.Fatalf("cluster show lacks %q:\n%s", want, out)
		}
	}
}
