package cluster

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/freeport"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	port, err := freeport.Pick(ip)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

// SPEC: C1 C2 C3 C4
func TestThreeNodesFlipTogether(t *testing.T) {
	primary, standby := pgtest.NoTLS(t, "127.0.0.1:0"), pgtest.NoTLS(t, "127.0.0.1:0")
	gwPort := strings.Split(freeAddr(t, "127.0.0.61"), ":")[1]
	gw1 := pgtest.NoTLS(t, "127.0.0.61:"+gwPort)
	topo := strings.NewReplacer("10.9.0.1", "127.0.0.61", "10.9.0.2", "127.0.0.62", ", 10.9.0.3", "",
		"10.0.1.4:5432", primary.Addr().String(), "10.0.1.5:5432", standby.Addr().String()).Replace(testTopology)
	parsed, _, err := topology.Parse("t.yaml", []byte(topo))
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := topology.NewSnapshot(parsed, topology.State{}, 1)

	names := []string{"n1", "n2", "n3"}
	binds := []string{freeAddr(t, "127.0.0.51"), freeAddr(t, "127.0.0.52"), freeAddr(t, "127.0.0.53")}
	var mu sync.Mutex
	states := map[string]topology.State{}
	var nodes []*Node
	// n1 holds the primary gateway address, n2 the secondary; n3 is a witness.
	holds := [][]string{{"127.0.0.61:" + gwPort}, {"127.0.0.62:" + gwPort}, nil}
	for i, name := range names {
		n, err := New(Config{
			Name: name, Members: names, Bind: binds[i], Join: binds, Dev: true, NodeID: uint8(i + 1), Holds: holds[i],
			GatewayPort: atoi(gwPort), Logger: zerolog.New(io.Discard),
		}, Hooks{
			Snapshot: func() *topology.Snapshot { return snap },
			Apply: func(s topology.State) {
				mu.Lock()
				states[name] = s
				mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		defer n.Stop()
	}
	all := func(cond func(topology.State) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range names {
			if !cond(states[n]) {
				return false
			}
		}
		return true
	}
	wait := func(what string, cond func(topology.State) bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !all(cond) {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("gave up waiting for %s: %v", what, states)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	if len(nodes[0].Decisions()) != 0 {
		t.Fatalf("nothing is down: no decision expected, got %v", nodes[0].Decisions())
	}
	primary.Close()
	wait("every node to fail orders-db over", func(s topology.State) bool { return s.FailedOver["orders-db"] })
	gw1.Close()
	wait("every node to activate the secondary gateway", func(s topology.State) bool {
		return s.ActiveGateway["eastus2"] == 1 && s.FailedOver["orders-db"]
	})
	for _, n := range nodes {
		if d := n.Decisions(); len(d) != 2 {
			t.Fatalf("%s: want 2 decisions, got %v", n.cfg.Name, d)
		}
	}
}

func TestKeyRequiredOutsideDevMode(t *testing.T) {
	_, err := New(Config{Name: "a", Members: []string{"a"}, Bind: freeAddr(t, "127.0.0.1")}, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("want a refusal without a key (C1), got %v", err)
	}
	_, err = New(Config{Name: "a", Members: []string{"a"}, Bind: freeAddr(t, "127.0.0.1"), Key: []byte("short")}, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Fatalf("want a key length error, got %v", err)
	}
	_, err = New(Config{Name: "z", Members: []string{"a"}, Bind: freeAddr(t, "127.0.0.1"), Dev: true}, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "not in the members") {
		t.Fatalf("want a members error, got %v", err)
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// A failover stays in force through a restart of every node: a node that
// comes back finds its decisions on disk and applies them before it meets
// any peer (C4, C5).
//
// SPEC: C4 C5
func TestDecisionsSurviveARestart(t *testing.T) {
	snap := haSnapshot(t)
	dir := t.TempDir()
	var mu sync.Mutex
	var applied []topology.State
	start := func() *Node {
		n, err := New(Config{Name: "n1", Members: []string{"n1"}, Bind: freeAddr(t, "127.0.0.51"), Dev: true, StateDir: dir, Logger: zerolog.New(io.Discard)},
			Hooks{Snapshot: func() *topology.Snapshot { return snap }, Apply: func(s topology.State) {
				mu.Lock()
				applied = append(applied, s)
				mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := start()
	var server string
	for name, si := range snap.Servers() {
		if si.Server.HighAvailability {
			server = name
		}
	}
	if _, err := n.Operate("server/"+server, 1, "test failover", false); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	mu.Lock()
	applied = nil
	mu.Unlock()

	n = start()
	defer n.Stop()
	ds := n.Decisions()
	if len(ds) != 1 || ds[0].Key != "server/"+server || ds[0].Value != 1 {
		t.Fatalf("the decision must be restored: %+v", ds)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) == 0 || !applied[0].FailedOver[server] {
		t.Fatalf("the restored decision must be applied at start: %+v", applied)
	}
}

// A node sends its votes once a round: with probes slower than the default
// vote TTL (an interval of 2 s here), every member's votes must still count
// at every moment, or a quorum is there only now and then.
//
// SPEC: C2 C3
func TestVotesStayFreshWithSlowProbes(t *testing.T) {
	snap := haSnapshot(t)
	names := []string{"n1", "n2", "n3"}
	binds := []string{freeAddr(t, "127.0.0.54"), freeAddr(t, "127.0.0.55"), freeAddr(t, "127.0.0.56")}
	var nodes []*Node
	for i, name := range names {
		n, err := New(Config{
			Name: name, Members: names, Bind: binds[i], Join: binds, Dev: true, NodeID: uint8(i + 1),
			ProbeInterval: 2 * time.Second, Logger: zerolog.New(io.Discard),
		}, Hooks{Snapshot: func() *topology.Snapshot { return snap }, Apply: func(topology.State) {}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		defer n.Stop()
	}
	fresh := func(n *Node) int {
		count := 0
		for _, m := range n.Status().Members {
			if m.VotesFresh {
				count++
			}
		}
		return count
	}
	deadline := time.Now().Add(10 * time.Second)
	for fresh(nodes[0]) < 3 || fresh(nodes[1]) < 3 || fresh(nodes[2]) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the members' votes never all counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, n := range nodes {
			if got := fresh(n); got != 3 {
				t.Fatalf("%s counts the votes of %d members of 3, with a probe round every 2 s", n.cfg.Name, got)
			}
		}
	}
}

// haSnapshot is testTopology's snapshot with orders-db's two backends at
// servers that answer an SSLRequest, up until the test ends.
func haSnapshot(t *testing.T) *topology.Snapshot {
	t.Helper()
	primary, standby := pgtest.NoTLS(t, "127.0.0.1:0"), pgtest.NoTLS(t, "127.0.0.1:0")
	topo := strings.NewReplacer("10.0.1.4:5432", primary.Addr().String(), "10.0.1.5:5432", standby.Addr().String()).Replace(testTopology)
	parsed, _, err := topology.Parse("t.yaml", []byte(topo))
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := topology.NewSnapshot(parsed, topology.State{}, 1)
	return snap
}
