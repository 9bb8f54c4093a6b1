package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/benchkit"
)

// replicationTopology: node n3 alone holds westus's gateway addresses, so a
// connection to sales-db goes through n3's gateway whichever node's API made
// the rule that admits it. sales-db starts with no firewall rule. The /28
// subnet tiny has 11 usable addresses; base-db, an HA server, takes four
// (T11), so one more HA server fits and two do not.
const replicationTopology = `regions:
  - {name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}
  - {name: westus, gateways: [127.0.0.23, 127.0.0.24]}
vnets:
  - name: app-vnet
    region: westus
    addressSpaces: [127.1.0.0/16]
    subnets:
      - {name: tiny, cidr: 127.1.0.48/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}
privateDnsZones:
  - {name: contoso.private.postgres.database.azure.com, links: [app-vnet]}
servers:
  - {name: sales-db, region: westus, access: public, backends: {primary: "PRIMARY"}}
  - name: base-db
    region: westus
    access: private
    network: {vnet: app-vnet, subnet: tiny, privateDnsZone: contoso.private.postgres.database.azure.com}
    highAvailability: true
    addresses: {primary: 127.1.0.52, standby: 127.1.0.53}
    backends: {primary: "PRIMARY", standby: "127.0.0.1:1"}
`

// replicaCluster is three appliance nodes with admin APIs and state
// directories; n1 and n2 hold eastus2's gateway addresses, n3 westus's.
type replicaCluster struct {
	dirs, corefiles, endpoints []string
	metrics, ready             []string // each node's prometheus and ready addresses
	nodes                      []*node
	dnsPort, gwPort            int
	ca                         string
	backend                    string // the PostgreSQL server's address
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
		backend: pgs[0].Addr,
	}
	adminPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	metricsPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	readyPort := freePort(t, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	var gossip, raft []string
	for i := 1; i <= 3; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1%d:%d", i, freePort(t, fmt.Sprintf("127.0.0.1%d", i))))
		raft = append(raft, fmt.Sprintf("127.0.0.1%d:%d", i, freePort(t, fmt.Sprintf("127.0.0.1%d", i))))
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
        cluster_raft %s
        cluster_join %s
        cluster_key_file gossip.key
        admin 127.0.0.1%d:%d
        state state
    }
}
`, c.dnsPort, i+1, c.metrics[i], c.ready[i], strings.Join(gw, " "), tlsDir, i+1, i+1, gossip[i], raft[i], strings.Join(gossip, " "), i+1, adminPort))
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

// rules returns the firewall rules of sales-db node i lists, nil when it
// cannot be asked.
func (c *replicaCluster) rules(t *testing.T, i int) map[string]bool {
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

// missing returns the names of want that node i does not list.
func (c *replicaCluster) missing(t *testing.T, i int, want []string) []string {
	have := c.rules(t, i)
	var out []string
	for _, name := range want {
		if !have[name] {
			out = append(out, name)
		}
	}
	return out
}

// burst writes firewall rules through node i's API until stop is closed
// or count were tried, and returns the names acknowledged (201).
func (c *replicaCluster) burst(i, count int, stop <-chan struct{}) []string {
	client := &http.Client{Timeout: 8 * time.Second}
	var acked []string
	for n := 0; n < count; n++ {
		select {
		case <-stop:
			return acked
		default:
		}
		name := fmt.Sprintf("burst-%03d", n)
		body := fmt.Sprintf(`{"startIpAddress": "127.2.%d.%d", "endIpAddress": "127.2.%d.%d"}`, n/200, n%200, n/200, n%200)
		req, _ := http.NewRequest("PUT", c.endpoints[i]+"/v1/servers/sales-db/firewall-rules/"+name, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			acked = append(acked, name)
		}
	}
	return acked
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
	if code != 0 || !hasAll(out, "ready     yes", "cluster   joined, 3 of 3 members alive, a flip needs 2", fmt.Sprintf("listening on 127.0.0.21:%d", c.gwPort), "state     ", "1 run-time changes, Raft ") {
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
		return hasAll(m1, `pgplane_state_changes_total{origin="local"} 1`, "pgplane_state_entries 1", "pgplane_state_applied_index ",
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
		t.Fatalf("delete on n1 with n2 down (two of three members): %s", out)
	}
	applied := appliedOnDisk(c.dirs[1])
	if !strings.Contains(applied, `"server/sales-db/firewallRule/lo":`) {
		t.Fatalf("n2's applied state on disk must still hold the rule: %s", applied)
	}
	c.start(t, 1)
	waitFor(t, "n2 to learn of the deletion", 20*time.Second, func() bool { return !c.ruleAt(t, 1, "lo") })
	for i := range c.nodes {
		if c.ruleAt(t, i, "lo") {
			t.Fatalf("the deleted rule came back on n%d", i+1)
		}
	}
	if out, err := c.psqlWest(t); err == nil {
		t.Fatalf("the deleted rule must not admit: %s", out)
	}

	// kill -9 of the leader during a burst of writes through a follower:
	// every write acknowledged is on every node once the leader is back.
	var lead int
	n, err := benchkit.RaftLeader(c.endpoints[0], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lead = n - 1
	follower := (lead + 1) % 3
	stop := make(chan struct{})
	ackedc := make(chan []string)
	go func() { ackedc <- c.burst(follower, 400, stop) }()
	waitFor(t, "the burst to be under way", 10*time.Second, func() bool { return len(c.rules(t, follower)) >= 20 })
	c.nodes[lead].stop(syscall.SIGKILL)
	time.Sleep(3 * time.Second) // writes go on through the election
	close(stop)
	acked := <-ackedc
	c.start(t, lead)
	for i := range c.nodes {
		waitFor(t, fmt.Sprintf("n%d to have every acknowledged write", i+1), 20*time.Second, func() bool { return len(c.missing(t, i, acked)) == 0 })
	}
	t.Logf("%d writes acknowledged through n%d while its leader n%d was killed; all on every node", len(acked), follower+1, lead+1)

	// A restart of every node keeps every acknowledged change in force.
	for i := range c.nodes {
		c.nodes[i].stop(syscall.SIGKILL)
	}
	for i := range c.nodes {
		c.start(t, i)
	}
	for i := range c.nodes {
		if m := c.missing(t, i, acked); len(m) > 0 {
			t.Fatalf("n%d lost %d of %d acknowledged writes in a restart of every node: %v", i+1, len(m), len(acked), m)
		}
	}
}

// refusedBy returns the rule of a refusal's first violation.
func refusedBy(body string) string {
	var e api.ChangeError
	if json.Unmarshal([]byte(body), &e) != nil || len(e.Violations) == 0 {
		return ""
	}
	return e.Violations[0].Rule
}

// haServerBody is the admin API body of an HA private server in the /28
// subnet tiny with the given addresses.
func haServerBody(primary, standby, backend string) string {
	return fmt.Sprintf(`{"region": "westus", "access": "private", "highAvailability": true,
"network": {"vnet": "app-vnet", "subnet": "tiny", "privateDnsZone": "contoso.private.postgres.database.azure.com"},
"addresses": {"primary": %q, "standby": %q}, "backends": {"primary": %q, "standby": "127.0.0.1:1"}}`, primary, standby, backend)
}

// Two nodes create, at the same instant, two HA servers that together
// overfill a /28. In every trial exactly one is acknowledged and the other
// refused with T11, and every node serves the acknowledged one.
//
// SPEC: C5 T11 A2
func TestConcurrentChangesOneRefused(t *testing.T) {
	c := startReplicaCluster(t)
	client := &http.Client{Timeout: 10 * time.Second}
	put := func(i int, name, body string) (int, string) {
		req, _ := http.NewRequest("PUT", c.endpoints[i]+"/v1/servers/"+name, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	exists := func(i int, name string) bool {
		status, _ := apiDo(t, "GET", c.endpoints[i]+"/v1/servers/"+name, "")
		return status == http.StatusOK
	}
	backend := c.backend
	for trial := 0; trial < 20; trial++ {
		north, south := fmt.Sprintf("t%d-north", trial), fmt.Sprintf("t%d-south", trial)
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			status [2]int
			body   [2]string
		)
		for j, req := range []struct {
			node       int
			name, body string
		}{{0, north, haServerBody("127.1.0.54", "127.1.0.55", backend)}, {2, south, haServerBody("127.1.0.56", "127.1.0.57", backend)}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status[j], body[j] = put(req.node, req.name, req.body)
			}()
		}
		close(start)
		wg.Wait()
		won, lost := north, south
		switch {
		case status[0] == http.StatusCreated && status[1] == http.StatusConflict && refusedBy(body[1]) == "T11":
		case status[1] == http.StatusCreated && status[0] == http.StatusConflict && refusedBy(body[0]) == "T11":
			won, lost = south, north
		default:
			t.Fatalf("trial %d: want one 201 and one 409 T11, got %d %s and %d %s", trial, status[0], body[0], status[1], body[1])
		}
		// The refusal speaks of the server its caller made.
		if refused := body[map[string]int{north: 0, south: 1}[lost]]; !strings.Contains(refused, fmt.Sprintf(`server \"%s\"`, lost)) {
			t.Fatalf("trial %d: the refusal of %s must name it: %s", trial, lost, refused)
		}
		for i := range c.nodes {
			waitFor(t, fmt.Sprintf("trial %d: n%d to serve %s", trial, i+1, won), 5*time.Second, func() bool { return exists(i, won) })
			if exists(i, lost) {
				t.Fatalf("trial %d: n%d serves the refused %s", trial, i+1, lost)
			}
		}
		if status, b := apiDo(t, "DELETE", c.endpoints[1]+"/v1/servers/"+won, ""); status >= 300 {
			t.Fatalf("trial %d: deleting %s: %d %s", trial, won, status, b)
		}
		for i := range c.nodes {
			waitFor(t, fmt.Sprintf("trial %d: n%d to drop %s", trial, i+1, won), 5*time.Second, func() bool { return !exists(i, won) })
		}
	}
	for i := range c.nodes {
		out, _ := pgplanectlAt(t, c.endpoints[i], "health")
		if strings.Contains(out, "CONFLICT") {
			t.Fatalf("n%d reports a conflict:\n%s", i+1, out)
		}
	}
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
