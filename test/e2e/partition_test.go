package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// partitionTopology is what the partitioned cluster serves: one public
// server, whose firewall rules the test changes.
const partitionTopology = `regions:
  - {name: eastus2, gateways: [192.0.2.10]}
servers:
  - {name: sales-db, region: eastus2, access: public, backends: {primary: "127.0.0.1:1"}}
`

// n1 and n2 run in one network namespace and n3 in another, the two joined
// by a veth pair. Setting the pair down cuts n3 off: it refuses writes with
// the reason and keeps serving DNS and reads from what it had applied,
// while n1 and n2 go on taking writes; once the link is back, every node
// converges and n3 takes writes again.
//
// SPEC: C5 C1
func TestMinorityRefusesWritesUntilHealed(t *testing.T) {
	majority, minority := netns(t), netns(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "add", "pgp-maj", "netns", majority, "type", "veth", "peer", "name", "pgp-min", "netns", minority)
	run("-n", majority, "addr", "add", "10.250.0.1/24", "dev", "pgp-maj")
	run("-n", majority, "addr", "add", "10.250.0.2/24", "dev", "pgp-maj")
	run("-n", minority, "addr", "add", "10.250.0.3/24", "dev", "pgp-min")
	run("-n", majority, "link", "set", "pgp-maj", "up")
	run("-n", minority, "link", "set", "pgp-min", "up")

	key := make([]byte, 32)
	rand.Read(key)
	dir := t.TempDir()
	namespaces := []string{majority, majority, minority}
	var endpoints []string
	for i := range 3 {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		os.MkdirAll(ndir, 0o755)
		writeFile(t, ndir, "topology.yaml", partitionTopology)
		writeFile(t, ndir, "gossip.key", base64.StdEncoding.EncodeToString(key))
		endpoints = append(endpoints, fmt.Sprintf("http://127.0.0.1:%d", 8531+i))
		launch(t, ndir, fmt.Sprintf(`.:53 {
    bind 10.250.0.%[1]d
    pgplane topology.yaml {
        cluster_name n%[1]d
        cluster_members n1 n2 n3
        cluster_bind 10.250.0.%[1]d:7946
        cluster_join 10.250.0.1:7946 10.250.0.2:7946 10.250.0.3:7946
        cluster_key_file gossip.key
        admin 127.0.0.1:%[2]d
        state state
    }
}
`, i+1, 8531+i), namespaces[i])
	}
	health := func(i int) string {
		out, _ := pgplanectlIn(t, namespaces[i], endpoints[i], "health")
		return out
	}
	for i := range 3 {
		waitFor(t, fmt.Sprintf("n%d to see every member and a Raft leader", i+1), 20*time.Second, func() bool {
			h := health(i)
			return strings.Contains(h, "3 of 3 members alive") && (strings.Contains(h, "Raft leader") || strings.Contains(h, "Raft follower of n"))
		})
	}
	create := func(i int, rule string) (string, int) {
		return pgplanectlIn(t, namespaces[i], endpoints[i], "firewall-rule", "create", "--server", "sales-db", "--name", rule, "--start-ip-address", "203.0.113.1", "--end-ip-address", "203.0.113.1")
	}
	has := func(i int, rule string) bool {
		_, code := pgplanectlIn(t, namespaces[i], endpoints[i], "firewall-rule", "show", "--server", "sales-db", "--name", rule)
		return code == 0
	}
	if out, code := create(2, "before"); code != 0 {
		t.Fatalf("a write through n3 with every member up: %s", out)
	}

	run("-n", minority, "link", "set", "pgp-min", "down")
	waitFor(t, "n3 to see itself alone", 30*time.Second, func() bool { return strings.Contains(health(2), "1 of 3 members alive") })
	out, code := create(2, "minority")
	if code == 0 || !strings.Contains(out, "no quorum: 1 of 3 members reachable") {
		t.Fatalf("n3 cut off must refuse a write with the reason: %d %s", code, out)
	}
	if !has(2, "before") {
		t.Fatal("n3 must keep serving reads from what it applied")
	}
	if r, err := digTry(minority, "@10.250.0.3", "sales-db.postgres.database.azure.com", "A"); err != nil || r.status != "NOERROR" || len(r.answer) == 0 {
		t.Fatalf("n3 must keep answering DNS: %v %+v", err, r)
	}
	waitFor(t, "the majority to take a write", 20*time.Second, func() bool {
		_, code := create(0, "majority")
		return code == 0
	})
	if !has(1, "majority") {
		t.Fatal("an acknowledged write must be on the other majority node")
	}

	run("-n", minority, "link", "set", "pgp-min", "up")
	waitFor(t, "n3 to catch up after healing", 30*time.Second, func() bool { return has(2, "majority") })
	waitFor(t, "n3 to take writes again", 20*time.Second, func() bool {
		_, code := create(2, "healed")
		return code == 0
	})
	for i := range 3 {
		waitFor(t, fmt.Sprintf("n%d to converge", i+1), 10*time.Second, func() bool {
			return has(i, "before") && has(i, "majority") && has(i, "healed") && !has(i, "minority")
		})
	}
}
