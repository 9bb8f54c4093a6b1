package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/miekg/dns"

	"github.com/pgplane/pgplane/internal/pgtest"
)

// The soak (issue 15): three nodes under DNS, SQL and admin API load (its
// own probes, and dnsperf and pgbench in runs of a few seconds) while
// a seeded chaos loop kills (-9) and restarts nodes, restarts them
// gracefully during a burst of writes, cuts one off from the others and
// heals it, and crashes the PostgreSQL primary (pgplane promotes the
// standby; the old primary is rebuilt as the new standby). It fails on a
// wrong DNS answer, a failed query or login, or a lost acknowledged change
// outside the windows the chaos opens, and prints the never-killed node's
// memory, goroutines and open files over the run.
//
// The whole soak runs in a network namespace of its own (the test runs
// itself again under `unshare --net`): there a cut is a pair of routing
// rules between one node's cluster address and the others', which would
// touch the host's network anywhere else.
//
// PGPLANE_SOAK sets the length (default 30s; `make soak DURATION=30m`),
// PGPLANE_SOAK_SEED replays a run's chaos.

// soakInnerEnv marks the run of TestSoak inside its network namespace.
const soakInnerEnv = "PGPLANE_SOAK_NETNS"

// runSoakInNamespace runs TestSoak again, in a new network namespace that
// ends with it; its output is this test's, and its failure too.
func runSoakInNamespace(t *testing.T) {
	cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run", "^TestSoak$", "-test.count", "1", "-test.timeout", "0", "-test.v")
	cmd.Env = append(os.Environ(), soakInnerEnv+"=1", "PGPLANE_BIN="+binary, "PGPLANECTL_BIN="+ctl)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		t.Fatalf("the soak in its own network namespace (unshare --net) failed: %v (its output is above)", err)
	}
}

// soakNetwork is the soak's namespace: loopback up, and the rule that
// looks local addresses up moved behind the cuts' rules (at preference 0
// nothing could come before it).
type soakNetwork struct{ t *testing.T }

func newSoakNetwork(t *testing.T) *soakNetwork {
	n := &soakNetwork{t}
	n.ip("link", "set", "lo", "up")
	n.ip("rule", "add", "pref", "100", "table", "local")
	n.ip("rule", "del", "pref", "0", "table", "local")
	return n
}

func (n *soakNetwork) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cut blackholes every packet between node i's cluster address
// (127.0.0.1<i+1>: gossip, Raft, forwarded writes) and the other nodes':
// the node keeps serving DNS, the gateway and its API to clients, and
// cannot reach the others, nor they it. heal takes the rules away.
func (n *soakNetwork) cut(i int) {
	for _, r := range soakCutRules(i) {
		n.ip(append([]string{"rule", "add"}, r...)...)
	}
}

func (n *soakNetwork) heal(i int) {
	for _, r := range soakCutRules(i) {
		n.ip(append([]string{"rule", "del"}, r...)...)
	}
}

// writesWhileCut writes firewall rules through node i, cut off from the
// others, for the length of the cut: none may be acknowledged (a change is
// acknowledged once a majority has it, which a cut node cannot reach), and
// at least one must be answered, refused (503: no quorum, within 5 s), or
// the cut cut nothing. It returns how many were refused.
func writesWhileCut(c *replicaCluster, i int, length time.Duration, n *int, fails *soakFailures) int {
	client := &http.Client{Timeout: 10 * time.Second}
	refused := 0
	for end := time.Now().Add(length); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		*n++
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/v1/servers/sales-db/firewall-rules/cut-%05d", c.endpoints[i], *n),
			strings.NewReader(fmt.Sprintf(`{"startIpAddress": "127.4.%d.%d", "endIpAddress": "127.4.%d.%d"}`, *n/250%250, *n%250, *n/250%250, *n%250)))
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			fails.add("cut", fmt.Sprintf("n%d acknowledged a write while cut off from the others", i+1))
		} else {
			refused++
		}
	}
	if refused == 0 {
		fails.add("cut", fmt.Sprintf("n%d, cut off, answered no write with a refusal", i+1))
	}
	return refused
}

func soakCutRules(i int) [][]string {
	var rules [][]string
	for j := range 3 {
		if j == i {
			continue
		}
		a, b := fmt.Sprintf("127.0.0.1%d", i+1), fmt.Sprintf("127.0.0.1%d", j+1)
		rules = append(rules, []string{"pref", "10", "from", a, "to", b, "blackhole"}, []string{"pref", "10", "from", b, "to", a, "blackhole"})
	}
	return rules
}

// soakWindow is how long after a node is killed, and after it is back,
// errors are allowed: a failover takes about 0.6 s, a Raft election a
// second or two, a restart's first answers a few seconds.
const soakWindow = 8 * time.Second

// soakEvents are the times the chaos loop acted.
type soakEvents struct {
	mu      sync.Mutex
	windows [][2]time.Time // from a kill to soakWindow after the restart
}

func (e *soakEvents) open(from time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.windows = append(e.windows, [2]time.Time{from, from.Add(24 * time.Hour)})
	return len(e.windows) - 1
}

func (e *soakEvents) close(i int, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.windows[i][1] = at.Add(soakWindow)
}

// excused reports whether an error at time at falls in a chaos window.
func (e *soakEvents) excused(at time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.windows {
		if !at.Before(w[0].Add(-time.Second)) && at.Before(w[1]) {
			return true
		}
	}
	return false
}

// soakFailures collects the breaches, with their times.
type soakFailures struct {
	mu    sync.Mutex
	list  []string
	count map[string]int
}

func (f *soakFailures) add(kind, what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count == nil {
		f.count = map[string]int{}
	}
	f.count[kind]++
	if len(f.list) < 20 {
		f.list = append(f.list, time.Now().Format("15:04:05.000")+" "+kind+": "+what)
	}
}

// SPEC: C3 C4 C5 C6 D1 G1 G13
func TestSoak(t *testing.T) {
	if os.Getenv(soakInnerEnv) == "" {
		runSoakInNamespace(t)
		return
	}
	network := newSoakNetwork(t)
	length := 30 * time.Second
	if v := os.Getenv("PGPLANE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PGPLANE_SOAK=%q: %v", v, err)
		}
		length = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PGPLANE_SOAK_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("soak: %s, chaos seed %d (PGPLANE_SOAK_SEED=%d replays it)", length, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	c := startReplicaCluster(t)
	// soak-db, public in eastus2: its name leads to eastus2's gateway name,
	// whose address is n1's (127.0.0.21) or, when n1 is down, n2's.
	body := fmt.Sprintf(`{"region": "eastus2", "access": "public", "backends": {"primary": %q},
"firewallRules": [{"name": "lo", "startIpAddress": "127.0.0.1", "endIpAddress": "127.0.0.255"}]}`, c.backend)
	if code, out := apiDo(t, "PUT", c.endpoints[2]+"/v1/servers/soak-db", body); code != http.StatusCreated {
		t.Fatalf("create soak-db: %d %s", code, out)
	}
	for i := range c.nodes {
		waitFor(t, fmt.Sprintf("n%d to answer soak-db", i+1), 10*time.Second, func() bool {
			_, err := soakResolve(c, i)
			return err == nil
		})
	}
	// soak-ha, an HA server in eastus2 on a real primary and its streaming
	// standby, promoted by pgplane when its primary dies: the SQL client
	// writes to it.
	primary, err := pgtest.Start("", pgtest.Options{OwnCertificate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(primary.Destroy)
	if out, err := primary.Psql(pgtest.Database, "CREATE TABLE soak (v int); GRANT ALL ON soak TO "+pgtest.User); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	initPgbench(t, primary)
	standby, err := primary.StartStandby("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Destroy)
	ha := fmt.Sprintf(`{"region": "eastus2", "access": "public", "highAvailability": true, "backends": {"primary": %q, "standby": %q},
"parameters": {"pgplane.promote": "auto", "pgplane.promote_grace": "3s"},
"firewallRules": [{"name": "lo", "startIpAddress": "127.0.0.1", "endIpAddress": "127.0.0.255"}]}`, primary.Addr, standby.Addr)
	if code, out := apiDo(t, "PUT", c.endpoints[2]+"/v1/servers/soak-ha", ha); code != http.StatusCreated {
		t.Fatalf("create soak-ha: %d %s", code, out)
	}
	waitFor(t, "a write to soak-ha through the gateway", 15*time.Second, func() bool {
		conn, err := soakConnect(c)
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), "INSERT INTO soak VALUES (0)").ReadAll()
		return err == nil
	})

	events := &soakEvents{}
	fails := &soakFailures{}
	ctx, cancel := context.WithTimeout(context.Background(), length)
	defer cancel()
	var wg sync.WaitGroup
	var alive [3]bool
	var aliveMu sync.Mutex
	for i := range alive {
		alive[i] = true
	}
	isAlive := func(i int) bool { aliveMu.Lock(); defer aliveMu.Unlock(); return alive[i] }
	setAlive := func(i int, up bool) { aliveMu.Lock(); defer aliveMu.Unlock(); alive[i] = up }

	// DNS: every node, every 20 ms; the answer must be eastus2's gateway,
	// held by a node that is up.
	var answers, dnsErrors int
	var dnsMu sync.Mutex
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
				if !isAlive(i) {
					continue
				}
				at := time.Now()
				addr, err := soakResolve(c, i)
				dnsMu.Lock()
				answers++
				dnsMu.Unlock()
				switch {
				case err != nil && !events.overlaps(at, time.Now()):
					dnsMu.Lock()
					dnsErrors++
					dnsMu.Unlock()
					fails.add("dns", fmt.Sprintf("n%d: %v", i+1, err))
				case err == nil && addr != "127.0.0.21" && addr != "127.0.0.22":
					fails.add("dns", fmt.Sprintf("n%d answered %s, not an eastus2 gateway address", i+1, addr))
				case err == nil && !events.excused(at) && !isAlive(map[string]int{"127.0.0.21": 0, "127.0.0.22": 1}[addr]):
					fails.add("dns", fmt.Sprintf("n%d answered %s, whose node is down", i+1, addr))
				}
			}
		}()
	}

	// SQL: a client that resolves soak-ha through n3, logs in through the
	// gateway and writes a row every 50 ms, reconnecting every tenth write
	// and after an error: a write that reaches a standby fails.
	var queries, queryErrors int
	var sqlMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conn *pgconn.PgConn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for n := 0; ctx.Err() == nil; n++ {
			time.Sleep(50 * time.Millisecond)
			at := time.Now()
			var err error
			if conn == nil || n%10 == 0 {
				if conn != nil {
					conn.Close(context.Background())
					conn = nil
				}
				conn, err = soakConnect(c)
			}
			if err == nil {
				qctx, qcancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err = conn.Exec(qctx, fmt.Sprintf("INSERT INTO soak VALUES (%d)", n)).ReadAll()
				qcancel()
				if err != nil {
					conn.Close(context.Background())
					conn = nil
				}
			}
			sqlMu.Lock()
			queries++
			if err != nil {
				queryErrors++
			}
			sqlMu.Unlock()
			if err != nil && !events.overlaps(at, time.Now()) {
				fails.add("sql", err.Error())
			}
		}
	}()

	// Admin API: firewall rules written through a random node, every
	// 100 ms or, during a burst, every 5 ms; the acknowledged ones kept.
	var burst atomic.Bool
	var acked []string
	var tried int
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 5 * time.Second}
		wrng := rand.New(rand.NewPCG(seed+1, seed+1))
		for n := 0; ctx.Err() == nil; n++ {
			if burst.Load() {
				time.Sleep(5 * time.Millisecond)
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			i := wrng.IntN(3)
			if !isAlive(i) {
				continue
			}
			name := fmt.Sprintf("soak-%05d", n)
			rule := fmt.Sprintf(`{"startIpAddress": "127.3.%d.%d", "endIpAddress": "127.3.%d.%d"}`, n/250%250, n%250, n/250%250, n%250)
			req, _ := http.NewRequest("PUT", c.endpoints[i]+"/v1/servers/sales-db/firewall-rules/"+name, strings.NewReader(rule))
			tried++
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				acked = append(acked, name)
			}
		}
	}()

	// Real tools beside the probes: dnsperf against n3 and pgbench -S
	// through the gateway, in runs of soakSlice.
	tools := &soakTools{}
	wg.Add(2)
	go func() { defer wg.Done(); tools.runDNSPerf(ctx, t, c, 500, fails) }()
	go func() { defer wg.Done(); tools.runPgbench(ctx, c, events, fails) }()

	// n3 is never killed: its memory, goroutines and open files over the
	// run tell whether something leaks.
	type sample struct {
		at                   time.Duration
		rssKiB, gor, openFDs int
	}
	var samples []sample
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			samples = append(samples, sample{time.Since(start), soakRSS(c.nodes[2].cmd.Process.Pid), soakGoroutines(c.metrics[2]), soakFDs(c.nodes[2].cmd.Process.Pid)})
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()

	// Chaos: every 5 to 10 s, one of: a crash of the PostgreSQL primary
	// (one time in four); else, in equal parts, a cut of a node from the
	// others for 4 to 8 s, a graceful restart of n1 or n2 during a burst
	// of writes, or a kill -9 of n1 or n2 (a gateway holder, maybe the Raft
	// leader) restarted 2 to 4 s later.
	var chaos []string
	cutWrites := 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(5000+rng.IntN(5000)) * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
		if rng.IntN(4) == 0 {
			// The primary crashes: pgplane promotes the standby and the
			// name follows; the old primary is rebuilt as the new standby.
			w := events.open(time.Now())
			primary.Crash()
			waitFor(t, "pgplane to promote the standby", 30*time.Second, func() bool {
				out, _ := standby.Psql("postgres", "SELECT pg_is_in_recovery()")
				return out == "f"
			})
			chaos = append(chaos, fmt.Sprintf("%s crash of the primary (port %d), promoted", time.Since(start).Round(time.Millisecond), primary.Port))
			if err := primary.Rebuild(standby); err != nil {
				t.Fatal(err)
			}
			primary, standby = standby, primary
			events.close(w, time.Now())
			continue
		}
		switch rng.IntN(3) {
		case 0:
			// A node cut off from the others (any of the three), then
			// healed: the others go on without it; it refuses writes,
			// serves what it has, and catches up once healed.
			victim := rng.IntN(3)
			cutFor := time.Duration(4000+rng.IntN(4000)) * time.Millisecond
			w := events.open(time.Now())
			network.cut(victim)
			refused := writesWhileCut(c, victim, cutFor, &cutWrites, fails)
			chaos = append(chaos, fmt.Sprintf("%s n%d cut off for %s (%d writes through it refused)", time.Since(start).Round(time.Millisecond), victim+1, cutFor, refused))
			network.heal(victim)
			events.close(w, time.Now())
			continue
		case 1:
			// A graceful restart (SIGTERM, as systemctl restart) of n1 or
			// n2 while the admin API takes a burst of writes.
			victim := rng.IntN(2)
			w := events.open(time.Now())
			burst.Store(true)
			time.Sleep(500 * time.Millisecond)
			setAlive(victim, false)
			c.nodes[victim].stop(syscall.SIGTERM)
			select {
			case <-c.nodes[victim].done:
			default:
				c.nodes[victim].stop(syscall.SIGKILL) // not down within 5 s
				fails.add("restart", fmt.Sprintf("n%d did not stop within 5 s of SIGTERM", victim+1))
			}
			chaos = append(chaos, fmt.Sprintf("%s restart of n%d during a write burst", time.Since(start).Round(time.Millisecond), victim+1))
			c.start(t, victim)
			setAlive(victim, true)
			time.Sleep(time.Second)
			burst.Store(false)
			events.close(w, time.Now())
			continue
		}
		victim := rng.IntN(2)
		down := time.Duration(2000+rng.IntN(2000)) * time.Millisecond
		w := events.open(time.Now())
		setAlive(victim, false)
		c.nodes[victim].stop(syscall.SIGKILL)
		chaos = append(chaos, fmt.Sprintf("%s kill -9 n%d, down %s", time.Since(start).Round(time.Millisecond), victim+1, down))
		time.Sleep(down)
		c.start(t, victim)
		setAlive(victim, true)
		events.close(w, time.Now())
	}
	wg.Wait()
	t.Logf("chaos: %s", strings.Join(chaos, "; "))

	// Every acknowledged change on every node.
	for i := range c.nodes {
		waitFor(t, fmt.Sprintf("n%d to list every acknowledged rule", i+1), 30*time.Second, func() bool { return len(c.missing(t, i, acked)) == 0 })
	}
	t.Logf("load tools: %s", tools)
	t.Logf("DNS: %d answers checked, %d errors inside chaos windows; SQL: %d writes, %d errors (all inside windows unless listed below); admin API: %d of %d writes acknowledged, all on every node",
		answers, dnsErrors, queries, queryErrors, len(acked), tried)
	var lines []string
	for _, s := range samples {
		lines = append(lines, fmt.Sprintf("%s rss=%dKiB goroutines=%d fds=%d", s.at.Round(time.Second), s.rssKiB, s.gor, s.openFDs))
	}
	t.Logf("n3 over the run: %s", strings.Join(lines, "; "))
	if len(samples) >= 4 {
		// From the end of the first quarter: the first minute or so is the
		// process warming up (caches, the Raft log's pages, the load's
		// first connections).
		first, last := samples[max(1, len(samples)/4)], samples[len(samples)-1]
		t.Logf("n3 slope from %s: RSS %+.1f KiB/min, goroutines %+.1f/min, open files %+.1f/min",
			first.at.Round(time.Second), perMinute(last.rssKiB-first.rssKiB, last.at-first.at), perMinute(last.gor-first.gor, last.at-first.at), perMinute(last.openFDs-first.openFDs, last.at-first.at))
		if last.openFDs-first.openFDs > 50 || last.gor-first.gor > 500 {
			fails.add("leak", fmt.Sprintf("n3 from %+v to %+v", first, last))
		}
	}
	if len(fails.list) > 0 {
		t.Fatalf("soak breaches (seed %d), by kind %v:\n%s", seed, fails.count, strings.Join(fails.list, "\n"))
	}
	if queries == 0 || answers == 0 || len(acked) == 0 || tools.dnsSent == 0 || tools.pgXacts == 0 {
		t.Fatalf("the soak's load did not run: %d queries, %d answers, %d acknowledged writes; %s", queries, answers, len(acked), tools)
	}
}

func perMinute(delta int, over time.Duration) float64 {
	if over <= 0 {
		return 0
	}
	return float64(delta) / over.Minutes()
}

// soakResolve asks node i for soak-db's address, following the CNAME to
// the region's gateway name in the same answer.
func soakResolve(c *replicaCluster, i int) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion("soak-db.postgres.database.azure.com.", dns.TypeA)
	cl := &dns.Client{Timeout: time.Second}
	r, _, err := cl.Exchange(m, fmt.Sprintf("127.0.0.1%d:%d", i+1, c.dnsPort))
	if err != nil {
		return "", err
	}
	if r.Rcode != dns.RcodeSuccess {
		return "", fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	return "", fmt.Errorf("no address in %v", r.Answer)
}

// soakConnect resolves soak-ha through n3 and logs in through the gateway.
func soakConnect(c *replicaCluster) (*pgconn.PgConn, error) {
	addr, err := soakResolve(c, 2)
	if err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=soak-ha.postgres.database.azure.com port=%d user=%s password=%s dbname=%s sslmode=verify-full sslrootcert=%s connect_timeout=3",
		c.gwPort, pgtest.User, pgtest.Password, pgtest.Database, c.ca))
	if err != nil {
		return nil, err
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{addr}, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return pgconn.ConnectConfig(ctx, cfg)
}

func soakRSS(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`VmRSS:\s+(\d+)`).FindSubmatch(b); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	return 0
}

func soakFDs(pid int) int {
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(entries)
}

// soakGoroutines reads go_goroutines from a node's metrics.
func soakGoroutines(metrics string) int {
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
