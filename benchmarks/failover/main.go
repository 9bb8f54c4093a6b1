// Command failover is the failover benchmark, over many trials of each kind:
//   - write availability: a real primary with a streaming standby behind
//     pgplane.promote auto; the time from the primary's crash to the first
//     write that succeeds through the gateway (a new connection by the same
//     name), and to every node answering the standby's address; with the
//     default grace and with a 1 s grace, to show what the grace costs;
//   - the same with promote never and a promotion by hand, from the
//     promotion to the first write (the name follows whoever promotes);
//   - the node holding the active gateway address killed: the time until
//     the others answer the next address;
//   - the same failure detection with memberlist's DefaultLANConfig alone
//     as the baseline; and isolation trials that count flips made by a node
//     cut off from the others.
//
// It prints figures; it never fails on a time.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/topology"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hashicorp/memberlist"
	"github.com/miekg/dns"
)

func main() {
	bin := flag.String("bin", "bin/pgplane", "the appliance binary")
	out := flag.String("out", "benchmarks/failover/out", "directory for configuration, logs and results")
	trials := flag.Int("trials", 20, "trials of each kind")
	flag.Parse()
	if err := run(*bin, *out, *trials); err != nil {
		fmt.Fprintln(os.Stderr, "bench-failover:", err)
		os.Exit(1)
	}
}

const topologyText = `regions:
  - {name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}
vnets:
  - name: app-vnet
    region: eastus2
    addressSpaces: [127.0.1.0/24]
    subnets: [{name: db, cidr: 127.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]
privateDnsZones:
  - {name: contoso.private.postgres.database.azure.com, links: [app-vnet]}
servers:
  - name: orders-db
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}
    highAvailability: true
    addresses: {primary: 127.0.1.4, standby: 127.0.1.5}
    backends: {primary: "PRIMARY", standby: "STANDBY"}
    parameters: PARAMS
`

// appliance is one node process.
type appliance struct {
	*benchkit.Appliance
	name    string
	dir     string
	dnsAddr string
	netns   string
}

// start starts the node and, outside a namespace, waits until it answers.
func (a *appliance) start(bin string) error {
	var err error
	if a.Appliance, err = benchkit.StartAppliance(bin, a.dir, a.netns); err != nil {
		return err
	}
	if a.netns != "" {
		return nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := query(a.dnsAddr, "orders-db.postgres.database.azure.com.", ""); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer:\n%s", a.name, a.Log.String())
}

// query asks a node for a name's A record from a source address and returns
// the last address of the answer.
func query(server, name, src string) (string, error) {
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	if src != "" {
		c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}, Timeout: 300 * time.Millisecond}
	}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return "", err
	}
	for i := len(r.Answer) - 1; i >= 0; i-- {
		if a, ok := r.Answer[i].(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	return "", nil
}

// waitAll polls every node every 10 ms until each answers want, and returns
// the time from start.
func waitAll(nodes []*appliance, name, src, want string, start time.Time) (time.Duration, error) {
	deadline := start.Add(30 * time.Second)
	pending := slices.Clone(nodes)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s never answered %s", pending[0].name, want)
		}
		var still []*appliance
		for _, n := range pending {
			if got, err := query(n.dnsAddr, name, src); err != nil || got != want {
				still = append(still, n)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return time.Since(start), nil
}

func run(bin, out string, trials int) error {
	bin, _ = filepath.Abs(bin)
	out, _ = filepath.Abs(out)
	os.RemoveAll(out)
	os.MkdirAll(out, 0o755)
	tlsDir := filepath.Join(out, "tls")
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com", "*.contoso.private.postgres.database.azure.com"}); err != nil {
		return err
	}
	primary, err := pgtest.Start("", pgtest.Options{OwnCertificate: true})
	if err != nil {
		return err
	}
	defer primary.Destroy()
	if o, err := primary.Psql(pgtest.Database, "CREATE TABLE bench (v int); GRANT ALL ON bench TO "+pgtest.User); err != nil {
		return fmt.Errorf("%v: %s", err, o)
	}
	standby, err := primary.StartStandby("")
	if err != nil {
		return err
	}
	defer standby.Destroy()
	pgs := []*pgtest.Server{primary, standby}
	topoWith := func(params string) string {
		return strings.NewReplacer("PRIMARY", pgs[0].Addr, "STANDBY", pgs[1].Addr, "PARAMS", params).Replace(topologyText)
	}
	topo := topoWith(autoParams)
	dnsPort, gwPort := benchkit.FreePort("127.0.0.11"), benchkit.FreePort("127.0.0.21")
	adminPort := benchkit.FreePortExcept("127.0.0.11", dnsPort)
	gossip, raft := benchkit.ClusterPorts([]string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, dnsPort, adminPort)
	nodes := make([]*appliance, 3)
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(out, name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(topo), 0o644)
		gw := fmt.Sprintf("cluster_gateway_port %d\n        cluster_monitor_user pgplane_auth auth.pgpass", gwPort)
		if i < 2 {
			gw = fmt.Sprintf("gateway 127.0.0.2%d:%d\n        gateway_tls dev %s\n        gateway_auth_user pgplane_auth auth.pgpass\n        node_id %d", i+1, gwPort, tlsDir, i+1)
		}
		os.WriteFile(filepath.Join(dir, "Corefile"), []byte(fmt.Sprintf(`.:%d {
    bind 127.0.0.1%d
    pgplane topology.yaml {
        %s
        cluster_name %s
        cluster_members n1 n2 n3
        cluster_bind %s
        cluster_raft %s
        cluster_join %s
        cluster_dev
        admin 127.0.0.1%d:%d
        state state
    }
}
`, dnsPort, i+1, gw, name, gossip[i], raft[i], strings.Join(gossip, " "), i+1, adminPort)), 0o644)
		nodes[i] = &appliance{name: name, dir: dir, dnsAddr: fmt.Sprintf("127.0.0.1%d:%d", i+1, dnsPort)}
		if err := nodes[i].start(bin); err != nil {
			return err
		}
		defer func() { nodes[i].Kill() }()
	}
	time.Sleep(2 * time.Second) // let gossip settle
	fmt.Printf("3 appliance nodes (2 gateway holders, 1 witness), 2 PostgreSQL servers; %d trials of each kind\n\n", trials)

	w := &writer{nodes: nodes, pgs: pgs, gw: fmt.Sprintf("127.0.0.21:%d", gwPort), ca: filepath.Join(tlsDir, gateway.DevCAFile)}
	auto, err := w.trials("promote auto, default grace", trials, false)
	if err != nil {
		return err
	}
	setParams := func(params string) {
		for _, n := range nodes {
			os.WriteFile(filepath.Join(n.dir, "topology.yaml"), []byte(topoWith(params)), 0o644)
		}
		time.Sleep(3 * time.Second) // every node reloads its topology file (reload 2s)
	}
	setParams("{pgplane.promote: auto, pgplane.promote_grace: 1s}")
	auto1s, err := w.trials("promote auto, grace 1s", max(trials/2, 1), false)
	if err != nil {
		return err
	}
	setParams("{pgplane.promote: never}")
	never, err := w.trials("promote never, promoted by hand", max(trials/2, 1), true)
	if err != nil {
		return err
	}
	setParams(autoParams)

	// Gateway trials: kill the node holding the active gateway address; the
	// others must answer the other address. In every other trial the node
	// killed also leads the Raft cluster of run-time changes: failover must
	// not wait for a new leader (C5).
	var gw, gwLeader, elections []time.Duration
	gws := []string{"127.0.0.21", "127.0.0.22"}
	endpoint := func(i int) string { return fmt.Sprintf("http://127.0.0.1%d:%d", i+1, adminPort) }
	holder := 0
	for i := 0; i < 2*trials; i++ {
		killLeader := i%2 == 1
		if killLeader {
			if err := steerLeader(nodes, holder, endpoint, bin); err != nil {
				return fmt.Errorf("gateway trial %d: %w", i+1, err)
			}
		}
		others := []*appliance{nodes[1-holder], nodes[2]}
		start := time.Now()
		nodes[holder].Kill()
		d, err := waitAll(others, "eastus2.control.postgres.database.azure.com.", "", gws[1-holder], start)
		if err != nil {
			return fmt.Errorf("gateway trial %d: %w", i+1, err)
		}
		how := ""
		if killLeader {
			gwLeader = append(gwLeader, d)
			lead, err := newLeader(endpoint(1-holder), holder+1)
			if err != nil {
				return fmt.Errorf("gateway trial %d: %w", i+1, err)
			}
			elected := time.Since(start)
			elections = append(elections, elected)
			how = fmt.Sprintf(" (the Raft leader; n%d leads %s after the kill)", lead, elected.Round(time.Millisecond))
		} else {
			gw = append(gw, d)
		}
		fmt.Printf("gateway trial %2d: %s%s\n", i+1, d.Round(time.Millisecond), how)
		if err := nodes[holder].start(bin); err != nil {
			return err
		}
		holder = 1 - holder
		time.Sleep(3 * time.Second) // the restarted node rejoins and is seen holding its address
	}

	// Isolation trials: a node in a network namespace of its own, cut off
	// from everything, for several vote TTLs; count the flips it makes.
	isoFlips, err := isolation(bin, out, topo, trials)
	if err != nil {
		return fmt.Errorf("isolation: %w", err)
	}

	base, err := memberlistBaseline(trials)
	if err != nil {
		return fmt.Errorf("memberlist baseline: %w", err)
	}
	var report bytes.Buffer
	fmt.Fprintf(&report, "\nWrite availability: from the primary's crash (or the promotion by hand) to the first write through the gateway\n")
	fmt.Fprintf(&report, "  %-52s %6s %8s %8s %14s\n", "", "trials", "median", "max", "DNS on all")
	for _, k := range []writeResult{auto, auto1s, never} {
		fmt.Fprintf(&report, "  %-52s %6d %8s %8s %14s\n", k.kind, len(k.write), med(k.write), slices.Max(k.write).Round(time.Millisecond), med(k.dns))
	}
	fmt.Fprintf(&report, "  the default grace (%s) costs %s of the median against a 1s grace; Azure documents 60-120 s\n",
		topology.DefaultPromoteGrace, (med(auto.write) - med(auto1s.write)).Round(time.Millisecond))
	fmt.Fprintf(&report, "\nTime from the failure to every surviving node answering the new address, %d trials\n", trials)
	fmt.Fprintf(&report, "  %-52s %8s %8s\n", "", "median", "max")
	fmt.Fprintf(&report, "  %-52s %8s %8s\n", "pgplane defaults, gateway node (SIGKILL)", med(gw), slices.Max(gw).Round(time.Millisecond))
	fmt.Fprintf(&report, "  %-52s %8s %8s\n", "the same, the node killed leading Raft", med(gwLeader), slices.Max(gwLeader).Round(time.Millisecond))
	fmt.Fprintf(&report, "  %-52s %8s %8s\n", "  (a new Raft leader, for comparison)", med(elections), slices.Max(elections).Round(time.Millisecond))
	fmt.Fprintf(&report, "  %-52s %8s %8s\n", "baseline: memberlist DefaultLANConfig detects a death", med(base), slices.Max(base).Round(time.Millisecond))
	fmt.Fprintf(&report, "  ratio pgplane/baseline (medians): gateway %.2fx\n", ratio(gw, base))
	fmt.Fprintf(&report, "\nIsolation: %d trials of %s each, flips by the isolated node: %d\n", trials, isolationWindow, isoFlips)
	fmt.Print(report.String())
	return os.WriteFile(filepath.Join(out, "results.txt"), report.Bytes(), 0o644)
}

// steerLeader makes nodes[want] the Raft leader: it kills and restarts the
// leader until the election falls on want.
func steerLeader(nodes []*appliance, want int, endpoint func(int) string, bin string) error {
	for attempt := 0; attempt < 20; attempt++ {
		lead, err := benchkit.RaftLeader(endpoint(want), 10*time.Second)
		if err != nil {
			return err
		}
		if lead-1 == want {
			return nil
		}
		nodes[lead-1].Kill()
		if _, err := newLeader(endpoint(want), lead); err != nil {
			return err
		}
		if err := nodes[lead-1].start(bin); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // it rejoins the gossip
	}
	return fmt.Errorf("n%d never became the Raft leader", want+1)
}

// newLeader waits until the node at endpoint knows a Raft leader other than
// member old, and returns it.
func newLeader(endpoint string, old int) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lead, err := benchkit.RaftLeader(endpoint, 10*time.Second)
		if err != nil {
			return 0, err
		}
		if lead != old {
			return lead, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no new Raft leader after n%d was killed", old)
}

const isolationWindow = 4 * time.Second

func isolation(bin, out, topo string, trials int) (int, error) {
	flips := 0
	for i := 0; i < trials; i++ {
		ns := fmt.Sprintf("pgplane-bench-%d-%d", os.Getpid(), i)
		cleanup := func() { exec.Command("ip", "netns", "del", ns).Run() }
		for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}, {"-n", ns, "addr", "add", "127.0.0.13/32", "dev", "lo"}} {
			if o, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				cleanup()
				return 0, fmt.Errorf("ip %v: %v %s", args, err, o)
			}
		}
		dir := filepath.Join(out, fmt.Sprintf("isolated-%d", i))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(topo), 0o644)
		os.WriteFile(filepath.Join(dir, "Corefile"), []byte(`.:53 {
    bind 127.0.0.13
    pgplane topology.yaml {
        cluster_name n3
        cluster_members n1 n2 n3
        cluster_bind 127.0.0.13:7946
        cluster_join 127.0.0.11:7946 127.0.0.12:7946
        cluster_dev
    }
}
`), 0o644)
		a := &appliance{name: "isolated", dir: dir, netns: ns}
		if err := a.start(bin); err != nil {
			cleanup()
			return 0, err
		}
		time.Sleep(isolationWindow)
		a.Kill()
		cleanup()
		n := strings.Count(a.Log.String(), "cluster: failover")
		flips += n
		fmt.Printf("isolation trial %2d: %d flips\n", i+1, n)
	}
	return flips, nil
}

// memberlistBaseline measures how long memberlist's DefaultLANConfig takes
// for the other two nodes of a three-node cluster to mark a killed node dead.
func memberlistBaseline(trials int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < trials; i++ {
		var lists []*memberlist.Memberlist
		var mu sync.Mutex
		dead := map[int]time.Time{}
		for j := 0; j < 3; j++ {
			c := memberlist.DefaultLANConfig()
			c.Name = fmt.Sprintf("b%d", j)
			c.BindAddr = "127.0.0.1"
			c.BindPort = 0
			c.Logger = log.New(io.Discard, "", 0)
			j := j
			c.Events = &events{leave: func(n *memberlist.Node) {
				if n.Name == "b0" {
					mu.Lock()
					if _, ok := dead[j]; !ok {
						dead[j] = time.Now()
					}
					mu.Unlock()
				}
			}}
			m, err := memberlist.Create(c)
			if err != nil {
				return nil, err
			}
			lists = append(lists, m)
			if j > 0 {
				if _, err := m.Join([]string{lists[0].LocalNode().Address()}); err != nil {
					return nil, err
				}
			}
		}
		time.Sleep(1500 * time.Millisecond)
		start := time.Now()
		lists[0].Shutdown() // a crash: no leave message
		deadline := start.Add(60 * time.Second)
		for {
			mu.Lock()
			done := len(dead) == 2
			var last time.Time
			for _, t := range dead {
				if t.After(last) {
					last = t
				}
			}
			mu.Unlock()
			if done {
				out = append(out, last.Sub(start))
				fmt.Printf("memberlist baseline trial %2d: %s\n", i+1, last.Sub(start).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				return nil, errors.New("memberlist never marked the node dead")
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, m := range lists[1:] {
			m.Shutdown()
		}
	}
	return out, nil
}

type events struct{ leave func(*memberlist.Node) }

func (e *events) NotifyJoin(*memberlist.Node)    {}
func (e *events) NotifyLeave(n *memberlist.Node) { e.leave(n) }
func (e *events) NotifyUpdate(*memberlist.Node)  {}

func med(ds []time.Duration) time.Duration { return benchkit.Median(ds).Round(time.Millisecond) }

func ratio(a, b []time.Duration) float64 { return float64(med(a)) / float64(med(b)) }

// autoParams are the failover parameters of the first trials.
const autoParams = "{pgplane.promote: auto}"

// writer runs write-availability trials against orders-db through n1's
// gateway, from a client in app-vnet.
type writer struct {
	nodes  []*appliance
	pgs    []*pgtest.Server // [0] is the primary backend, [1] the standby backend
	active int              // the backend that is primary now
	gw, ca string
	row    int
}

// writeResult is one kind of trials' figures.
type writeResult struct {
	kind       string
	write, dns []time.Duration
}

// write opens a new connection by the server's name, as a reconnecting
// application does, and inserts a row.
func (w *writer) write() error {
	w.row++
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=orders-db.contoso.private.postgres.database.azure.com user=%s password=%s dbname=%s sslmode=verify-full sslrootcert=%s",
		pgtest.User, pgtest.Password, pgtest.Database, w.ca))
	if err != nil {
		return err
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.1.10")}}
	cfg.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, w.gw)
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, fmt.Sprintf("INSERT INTO bench VALUES (%d)", w.row)).ReadAll()
	return err
}

// trials crashes the primary n times. With manual, it promotes the standby
// by hand once every node sees the primary down, and times from there.
// After each trial the crashed server is rebuilt as a standby of the new
// primary, so the next trial crashes the other one.
func (w *writer) trials(kind string, n int, manual bool) (writeResult, error) {
	r := writeResult{kind: kind}
	addrs := []string{"127.0.1.4", "127.0.1.5"}
	for i := 0; i < n; i++ {
		if err := w.write(); err != nil {
			return r, fmt.Errorf("%s: a write before trial %d: %w", kind, i+1, err)
		}
		old, next := w.pgs[w.active], w.pgs[1-w.active]
		if err := replayed(next, w.row); err != nil {
			return r, err
		}
		start := time.Now()
		old.Crash()
		if manual {
			time.Sleep(time.Second) // every node sees it down; the name stays
			if err := next.Promote(); err != nil {
				return r, err
			}
			start = time.Now()
		}
		dnsDone := make(chan time.Duration, 1)
		dnsErr := make(chan error, 1)
		go func() {
			d, err := waitAll(w.nodes, "orders-db.postgres.database.azure.com.", "127.0.1.10", addrs[1-w.active], start)
			dnsDone <- d
			dnsErr <- err
		}()
		for w.write() != nil {
			if time.Since(start) > 60*time.Second {
				return r, fmt.Errorf("%s trial %d: no write succeeded within 60 s", kind, i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
		wd := time.Since(start)
		dd := <-dnsDone
		if err := <-dnsErr; err != nil {
			return r, fmt.Errorf("%s trial %d: %w", kind, i+1, err)
		}
		r.write, r.dns = append(r.write, wd), append(r.dns, dd)
		fmt.Printf("%s, trial %2d: first write %s, DNS on every node %s\n", kind, i+1, wd.Round(time.Millisecond), dd.Round(time.Millisecond))
		w.active = 1 - w.active
		if err := old.Rebuild(next); err != nil {
			return r, err
		}
		time.Sleep(2 * time.Second) // every node sees the rebuilt standby, and lifts its fence
	}
	return r, nil
}

// replayed waits until a standby has replayed row v (replication is
// asynchronous: a row not yet streamed at a crash is lost, whatever pgplane
// does).
func replayed(standby *pgtest.Server, v int) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if out, _ := standby.Psql(pgtest.Database, fmt.Sprintf("SELECT count(*) FROM bench WHERE v = %d", v)); out == "1" {
			return nil
		}
	}
	return fmt.Errorf("the standby never replayed row %d", v)
}
