package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/gateway"
)

// replicationTopology: node n3 alone holds westus's gateway addresses, so a
// connection to sales-db goes through n3's gateway whichever node's API made
// the rule that admits it. sales-db starts with no firewall rule.
const replicationTopology = `regions:
  - {name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}
  - {name: westus, gateways: [127.0.0.23, 127.0.0.24]}
servers:
  - {name: sales-db, region: westus, access: public, backends: {primary: "PRIMARY"}}
`

// replicaCluster is three appliance nodes with admin APIs and state
// directories; n1 and n2 hold eastus2's gateway addresses, n3 westus's.
type replicaCluster struct {
	dirs, corefiles, endpoints []string
	metrics, ready             []string // each node's prometheus and ready addresses
	nodes                      []*node
	dnsPort, gwPort            int
	ca                         string
}

func startReplicaCluster(t *testing.T) *replicaCluster {
	t.Helper()
	dir := t.TempDir()
	tlsDir, pgs := backends(t, dir, 1)
	topo := strings.ReplaceAll(replicationTopology, "PRIMARY", pgs[0].Addr)
	key := make([]byte, 32)
	rand.Read(key)
	c := &replicaCluster{
		dnsPort: freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13"),
		gwPort:  freePort(t, "127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"),
		ca:      filepath.Join(tlsDir, gateway.DevCAFile),
	}
	adminPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	metricsPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	readyPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	var gossip []string
	for i := 1; i <= 3; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1%d:%d", i, freePort(t, fmt.Sprintf("127.0.0.1%d", i))))
	}
	holds := []string{"127.0.0.21", "127.0.0.22", "127.0.0.23 127.0.0.24"}
	for i := 0; i < 3; i++ {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		os.MkdirAll(ndir, 0o755)
		writeFile(t, ndir, "topology.yaml", topo)
		writeFile(t, ndir, "gossip.key", base64.StdEncoding.EncodeToString(key))
		var gw []string
		for _, a := range strings.Fields(holds[i]) {
			gw = append(gw, fmt.Sprintf("%s:%d", a, c.gwPort))
		}
		c.dirs = append(c.dirs, ndir)
		c.endpoints = append(c.endpoints, fmt.Sprintf("http://127.0.0.1%d:%d", i+1, adminPort))
		c.metrics = append(c.metrics, fmt.Sprintf("127.0.0.1%d:%d", i+1, metricsPort))
		c.ready = append(c.ready, fmt.Sprintf("127.0.0.1%d:%d", i+1, readyPort))
		c.corefiles = append(c.corefiles, fmt.Sprintf(`.:%d {
    bind 127.0.0.1%d
    prometheus %s
    ready %s
    pgplane topology.yaml {
        gateway %s
        gateway_tls dev %s
        gateway_auth_user pgplane_auth auth.pgpass
        node_id %d
        cluster_name n%d
        cluster_members n1 n2 n3
        cluster_bind %s
        cluster_join %s
        cluster_key_file gossip.key
        admin 127.0.0.1%d:%d
        state state
    }
}
`, c.dnsPort, i+1, c.metrics[i], c.ready[i], strings.Join(gw, " "), tlsDir, i+1, i+1, gossip[i], strings.Join(gossip, " "), i+1, adminPort))
		c.nodes = append(c.nodes, nil)
		c.start(t, i)
	}
	return c
}

func (c *replicaCluster) start(t *testing.T, i int) {
	t.Helper()
	c.nodes[i] = startNode(t, c.dirs[i], c.corefiles[i], fmt.Sprintf("127.0.0.1%d:%d", i+1, c.dnsPort), "")
}

// ruleAt reports whether node i has the firewall rule.
func (c *replicaCluster) ruleAt(t *testing.T, i int, rule string) bool {
	_, code := pgplanectlAt(t, c.endpoints[i], "firewall-rule", "show", "--server", "sales-db", "--name", rule)
	return code == 0
}

// psqlWest connects to sales-db through n3's gateway.
func (c *replicaCluster) psqlWest(t *testing.T) (string, error) {
	return psql(t, fmt.Sprintf("host=sales-db.postgres.database.azure.com hostaddr=127.0.0.23 port=%d sslmode=verify-full sslrootcert=%s user=app dbname=appdb", c.gwPort, c.ca), "SELECT 7")
}

// SPEC: C5 A1 G5
func TestChangesReachEveryNodeAndSurvive(t *testing.T) {
	c := startReplicaCluster(t)
	if out, err := c.psqlWest(t); err == nil || !strings.Contains(out, "no firewall rule") {
		t.Fatalf("sales-db has no rule yet and must refuse: %v %s", err, out)
	}

	// A rule created through node 1 admits a connection through node 3.
	if out, code := pgplanectlAt(t, c.endpoints[0], "firewall-rule", "create", "--server", "sales-db", "--name", "lo", "--start-ip-address", "127.0.0.1", "--end-ip-address", "127.0.0.1"); code != 0 {
		t.Fatalf("create on n1: %s", out)
	}
	waitFor(t, "n3's gateway to admit by n1's rule", 5*time.Second, func() bool {
		out, err := c.psqlWest(t)
		return err == nil && out == "7"
	})
	// Every node is ready; the metrics show the change's way and the
	// cluster's health.
	for i := range c.nodes {
		if status, body := httpGet(t, "http://"+c.ready[i]+"/ready"); status != 200 {
			t.Fatalf("n%d not ready: %d %s", i+1, status, body)
		}
	}
	out, code := pgplanectlAt(t, c.endpoints[0], "health")
	if code != 0 || !hasAll(out, "ready     yes", "cluster   joined, 3 of 3 members alive, a flip needs 2", fmt.Sprintf("listening on 127.0.0.21:%d", c.gwPort), "state     ") {
		t.Fatalf("pgplanectl health on n1: %d\n%s", code, out)
	}
	dig(t, "@127.0.0.11", "-p", fmt.Sprint(c.dnsPort), "sales-db.postgres.database.azure.com", "A")
	dig(t, "@127.0.0.11", "-p", fmt.Sprint(c.dnsPort), "nope-db.postgres.database.azure.com", "A")
	defer func() {
		if t.Failed() {
			_, m1 := httpGet(t, "http://"+c.metrics[0]+"/metrics")
			_, m3 := httpGet(t, "http://"+c.metrics[2]+"/metrics")
			t.Logf("n1 metrics:\n%s\nn3 metrics:\n%s", grepLines(m1, "pgplane"), grepLines(m3, "pgplane"))
		}
	}()
	waitFor(t, "the metrics of a change and of the cluster", 5*time.Second, func() bool {
		_, m1 := httpGet(t, "http://"+c.metrics[0]+"/metrics")
		_, m3 := httpGet(t, "http://"+c.metrics[2]+"/metrics")
		return hasAll(m1, `pgplane_state_changes_total{origin="local"} 1`, `pgplane_state_entries{kind="live"} 1`,
			`pgplane_cluster_members{state="alive"} 3`, `pgplane_cluster_gossip_health_score 0`,
			`pgplane_cluster_probes_total{kind="gateway",result="up"}`, `pgplane_cluster_target_up{target="gateway/westus/127.0.0.23"} 1`,
			`coredns_pgplane_answers_total{rcode="NOERROR",view="public"}`, `coredns_pgplane_answers_total{rcode="NXDOMAIN",view="public"} 1`) &&
			hasAll(m3, `pgplane_state_changes_total{origin="peer"} 1`, `pgplane_gateway_connections_total{decision="proxied",server="sales-db"} 1`,
				`pgplane_gateway_connections_total{decision="denied_firewall",server="sales-db"}`)
	})

	// A rule deleted while node 2 is stopped stays deleted when node 2
	// returns with its old state.
	waitFor(t, "n2 to have the rule", 5*time.Second, func() bool { return c.ruleAt(t, 1, "lo") })
	c.nodes[1].stop(syscall.SIGTERM)
	if out, code := pgplanectlAt(t, c.endpoints[0], "firewall-rule", "delete", "--server", "sales-db", "--name", "lo"); code != 0 {
		t.Fatalf("delete on n1: %s", out)
	}
	state, _ := os.ReadFile(filepath.Join(c.dirs[1], "state", "state.json"))
	if !strings.Contains(string(state), `"key":"server/sales-db/firewallRule/lo","value"`) {
		t.Fatalf("n2's state on disk must still hold the live rule: %s", state)
	}
	c.start(t, 1)
	waitFor(t, "n2 to learn of the deletion", 20*time.Second, func() bool { return !c.ruleAt(t, 1, "lo") })
	time.Sleep(2 * time.Second) // gossip rounds in which n2 could resurrect it
	for i := range c.nodes {
		if c.ruleAt(t, i, "lo") {
			t.Fatalf("the deleted rule came back on n%d", i+1)
		}
	}
	if out, err := c.psqlWest(t); err == nil {
		t.Fatalf("the deleted rule must not admit: %s", out)
	}

	// kill -9 node 3 during a burst of writes to it: every acknowledged
	// write is there after its restart, and reaches node 1.
	var (
		mu    sync.Mutex
		acked []string
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 2 * time.Second}
		for i := 0; i < 400; i++ {
			name := fmt.Sprintf("burst-%03d", i)
			body := fmt.Sprintf(`{"startIpAddress": "127.1.%d.%d", "endIpAddress": "127.1.%d.%d"}`, i/200, i%200, i/200, i%200)
			req, _ := http.NewRequest("PUT", c.endpoints[2]+"/v1/servers/sales-db/firewall-rules/"+name, strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				return // the node is gone
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		}
	}()
	waitFor(t, "some writes to be acknowledged", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 30
	})
	c.nodes[2].stop(syscall.SIGKILL)
	<-done
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	c.start(t, 2)
	rules := func(i int) map[string]bool {
		out, code := pgplanectlAt(t, c.endpoints[i], "firewall-rule", "list", "--server", "sales-db", "--output", "json")
		var list []struct{ Name string }
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
			return nil
		}
		have := map[string]bool{}
		for _, r := range list {
			have[r.Name] = true
		}
		return have
	}
	missing := func(i int) []string {
		have := rules(i)
		var out []string
		for _, name := range want {
			if !have[name] {
				out = append(out, name)
			}
		}
		return out
	}
	if m := missing(2); len(m) > 0 {
		t.Fatalf("n3 lost %d of %d acknowledged writes after kill -9: %v", len(m), len(want), m)
	}
	waitFor(t, "n1 to have every acknowledged write", 20*time.Second, func() bool { return len(missing(0)) == 0 })
	t.Logf("%d writes acknowledged before kill -9; all on n3 after its restart and on n1", len(want))
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return apiDo(t, "GET", url, "")
}

// hasAll reports whether text holds every one of the strings.
func hasAll(text string, want ...string) bool {
	for _, w := range want {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

// SPEC: C1
func TestReadyWaitsForTheCluster(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "topology.yaml", "regions: [{name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}]\n")
	dnsPort, readyPort, adminPort := freePort(t, "127.0.0.11"), freePort(t, "127.0.0.11"), freePort(t, "127.0.0.11")
	gossip := fmt.Sprintf("127.0.0.11:%d", freePort(t, "127.0.0.11"))
	absent := fmt.Sprintf("127.0.0.12:%d", freePort(t, "127.0.0.12"))
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.11
    ready 127.0.0.11:%d
    pgplane topology.yaml {
        admin 127.0.0.11:%d
        cluster_name n1
        cluster_members n1 n2
        cluster_bind %s
        cluster_join %s
        cluster_dev
    }
}
`, dnsPort, readyPort, adminPort, gossip, absent)
	startNode(t, dir, corefile, fmt.Sprintf("127.0.0.11:%d", dnsPort), "")
	status, body := httpGet(t, fmt.Sprintf("http://127.0.0.11:%d/ready", readyPort))
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "pgplane") {
		t.Fatalf("a node that has met no other member must not be ready: %d %s", status, body)
	}
	out, code := pgplanectlAt(t, fmt.Sprintf("http://127.0.0.11:%d", adminPort), "health")
	if code != 1 || !hasAll(out, "ready     NO", "cluster   NOT JOINED, 1 of 2 members alive") {
		t.Fatalf("pgplanectl health must say why: %d\n%s", code, out)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
