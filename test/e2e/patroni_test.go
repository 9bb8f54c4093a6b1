package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/internal/syncbuf"
)

// patroniTopology: ledger is a private HA server whose two backends are
// run by Patroni; their roles come from Patroni's REST API.
const patroniTopology = `regions:
  - {name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}
vnets:
  - name: app-vnet
    region: eastus2
    addressSpaces: [127.0.1.0/24]
    subnets: [{name: db, cidr: 127.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]
privateDnsZones:
  - {name: contoso.private.postgres.database.azure.com, links: [app-vnet]}
servers:
  - name: ledger
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}
    highAvailability: true
    addresses: {primary: 127.0.1.4, standby: 127.0.1.5}
    backends: {primary: "127.0.0.1:P1", standby: "127.0.0.1:P2"}
    parameters: {pgplane.patroni_primary: "http://127.0.0.1:R1", pgplane.patroni_standby: "http://127.0.0.1:R2"}
`

// process is a daemon a test started, with its children (Patroni's
// PostgreSQL) in its process group; the test's end stops the group.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
	done chan struct{}
}

func startProcess(t *testing.T, name string, cred *syscall.Credential, dir string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(args[0], args[1:]...), log: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// A child that outlives the daemon keeps its output pipe open: Wait
	// gives up on the pipe two seconds after the daemon exits.
	p.cmd.WaitDelay = 2 * time.Second
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
		}
		syscall.Kill(-pgid, syscall.SIGKILL) // whatever of the group is left
		<-p.done
		if t.Failed() {
			t.Logf("log of %s:\n%s", p.name, p.log.String())
		}
	})
	return p
}

// patroniNode writes a Patroni configuration for one member and starts it
// as the postgres user.
func patroniNode(t *testing.T, dir, name string, pgPort, restPort, etcdPort int, cred *syscall.Credential) *process {
	t.Helper()
	home := filepath.Join(dir, name)
	os.MkdirAll(home, 0o700)
	os.Chown(home, int(cred.Uid), int(cred.Gid))
	conf := fmt.Sprintf(`scope: pgplane-e2e
name: %[1]s
restapi:
  listen: 127.0.0.1:%[3]d
  connect_address: 127.0.0.1:%[3]d
etcd3:
  host: 127.0.0.1:%[4]d
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    postgresql:
      use_pg_rewind: false
      parameters: {wal_level: replica, hot_standby: "on", max_wal_senders: 5, max_replication_slots: 5, fsync: "off"}
  initdb: [{encoding: UTF8}]
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:%[2]d
  connect_address: 127.0.0.1:%[2]d
  data_dir: %[5]s/data
  bin_dir: %[6]s
  pgpass: %[5]s/pgpass
  authentication:
    replication: {username: replicator, password: replicator-secret}
    superuser: {username: postgres, password: postgres-secret}
  parameters: {unix_socket_directories: '%[5]s'}
`, name, pgPort, restPort, etcdPort, home, pgtest.BinDir())
	path := filepath.Join(home, "patroni.yml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProcess(t, "patroni "+name, cred, home, "patroni", path)
}

// restStatus is the HTTP status of a Patroni REST endpoint.
func restStatus(port int, path string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPatroniRoles runs a real Patroni pair (etcd as its DCS) and a
// pgplane node that learns the backends' roles from Patroni's REST API:
// the name follows the leader through a switchover and back.
// SPEC: C6
func TestPatroniRoles(t *testing.T) {
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	dir, err := os.MkdirTemp("", "pgplane-patroni")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })

	etcdPort, peerPort := freePort(t), freePort(t)
	startProcess(t, "etcd", nil, dir, "etcd", "--name", "e2e", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", peerPort))
	pg := []int{freePort(t), freePort(t)}
	rest := []int{freePort(t), freePort(t)}
	patroniNode(t, dir, "p1", pg[0], rest[0], etcdPort, cred)
	waitFor(t, "p1 to bootstrap as Patroni's leader", 60*time.Second, func() bool { return restStatus(rest[0], "/primary") == 200 })
	patroniNode(t, dir, "p2", pg[1], rest[1], etcdPort, cred)
	waitFor(t, "p2 to run as a replica", 60*time.Second, func() bool { return restStatus(rest[1], "/replica") == 200 })

	ndir := t.TempDir()
	writeFile(t, ndir, "topology.yaml", strings.NewReplacer("P1", fmt.Sprint(pg[0]), "P2", fmt.Sprint(pg[1]),
		"R1", fmt.Sprint(rest[0]), "R2", fmt.Sprint(rest[1])).Replace(patroniTopology))
	dnsPort, gossip := freePort(t, "127.0.0.11"), freePort(t, "127.0.0.11")
	n := startNode(t, ndir, fmt.Sprintf(`.:%d {
    bind 127.0.0.11
    pgplane topology.yaml {
        cluster_name n1
        cluster_members n1
        cluster_bind 127.0.0.11:%d
        cluster_dev
    }
}
`, dnsPort, gossip), fmt.Sprintf("127.0.0.11:%d", dnsPort), "")
	answers := func(want string) bool {
		r := dig(t, "@127.0.0.11", "-p", fmt.Sprint(dnsPort), "-b", "127.0.1.10", "+short", "ledger.postgres.database.azure.com", "A")
		return strings.HasSuffix(strings.TrimSpace(r.out), want)
	}
	waitFor(t, "the node to learn p1 is the leader", 10*time.Second, func() bool {
		return strings.Contains(n.log.String(), `"target":"backend/ledger/primary","address":"127.0.0.1:`+fmt.Sprint(pg[0])+`","role":"primary"`)
	})
	if !answers("127.0.1.4") {
		t.Fatal("the name starts on p1, Patroni's leader")
	}

	// A switchover: Patroni stops p1, promotes p2 and restarts p1 as its
	// replica. The name follows p2; p1, seen down while primary, is fenced
	// until it runs as a replica, and then may take the name back.
	switchover := func(leader, candidate string) {
		t.Helper()
		cmd := exec.Command("patronictl", "-c", filepath.Join(dir, leader, "patroni.yml"), "switchover", "--leader", leader, "--candidate", candidate, "--force")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("patronictl switchover: %v\n%s", err, out)
		}
	}
	switchover("p1", "p2")
	waitFor(t, "the name to follow p2", 30*time.Second, func() bool { return answers("127.0.1.5") })
	waitFor(t, "p1 to run as a replica", 60*time.Second, func() bool { return restStatus(rest[0], "/replica") == 200 })
	waitFor(t, "no fence on p1 once it is a replica", 10*time.Second, func() bool {
		log := n.log.String()
		return !strings.Contains(log, `"decision":"fence/ledger","value":0`) || strings.Contains(log, "primary backend runs as a standby again: no longer fenced")
	})
	switchover("p2", "p1")
	waitFor(t, "the name to follow p1 back", 30*time.Second, func() bool { return answers("127.0.1.4") })
}
