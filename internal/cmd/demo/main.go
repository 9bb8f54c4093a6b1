// Command demo is `make demo`: it starts, on this machine, three pgplane
// appliance nodes, a PostgreSQL primary and its streaming standby, and
// client "VNets" on loopback addresses, then walks through the service's
// story with the real tools, printing each command, its output and whether
// the outcome is the one expected. It removes everything it started on exit
// and on Ctrl-C. The exit code is 0 only when every step came out as
// expected, so a test can run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/pgtest"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding pgplane and pgplanectl")
	keep := flag.Bool("keep", false, "keep the demo's directory (logs, Corefiles) after it ends")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	d := &demo{ctx: ctx}
	err := d.run(*bin)
	interrupted := ctx.Err() != nil
	stop()
	d.cleanup(*keep)
	switch {
	case interrupted:
		fmt.Println("\ninterrupted; everything the demo started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	case d.failed > 0:
		fmt.Printf("\n%d of %d steps did not come out as expected\n", d.failed, d.steps)
		os.Exit(1)
	}
	fmt.Printf("\nall %d steps came out as expected\n", d.steps)
}

// The demo's topology: app-vnet is linked to the private zone, hub-vnet is
// peered with it but not linked. Each has an inbound resolver address on
// node n1, so nslookup (which cannot pick a source address) asks in its view.
const topologyText = `datacenterRanges: []
regions:
  - {name: eastus2, gateways: [127.0.0.21, 127.0.0.22]}
vnets:
  - name: app-vnet
    region: eastus2
    addressSpaces: [127.0.1.0/24]
    resolverAddress: 127.0.1.250
    peerings: [hub-vnet]
    subnets: [{name: db, cidr: 127.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]
  - name: hub-vnet
    region: eastus2
    addressSpaces: [127.0.2.0/24]
    resolverAddress: 127.0.2.250
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
    parameters: {pgplane.promote: auto}
  - name: sales-db
    region: eastus2
    access: public
    highAvailability: true
    backends: {primary: "PRIMARY", standby: "STANDBY"}
    parameters: {pgplane.promote: auto}
`

// demo is the running demonstration and what it started.
type demo struct {
	ctx           context.Context
	dir           string
	pgs           []*pgtest.Server
	nodes         []*benchkit.Appliance
	ctl           string
	endpoint      string
	dnsPort       int
	gwPort        int
	ca            string
	steps, failed int
}

func (d *demo) cleanup(keep bool) {
	for i, n := range d.nodes {
		n.Stop()
		if keep {
			os.WriteFile(filepath.Join(d.dir, fmt.Sprintf("n%d", i+1), "pgplane.log"), []byte(n.Log.String()), 0o644)
		}
	}
	for _, pg := range d.pgs {
		pg.Stop()
		os.RemoveAll(pg.Dir)
	}
	if d.dir != "" {
		if keep {
			fmt.Println("the demo's files are in", d.dir)
		} else {
			os.RemoveAll(d.dir)
		}
	}
}

// step prints a step's title.
func (d *demo) step(title string) {
	d.steps++
	fmt.Printf("\n── %d. %s ──\n", d.steps, title)
}

// expect prints whether a step's outcome is the one expected.
func (d *demo) expect(ok bool, what string) {
	if ok {
		fmt.Println("✓", what)
		return
	}
	d.failed++
	fmt.Println("✗ expected:", what)
}

// sh runs a command, printing it and its output, and returns the output.
func (d *demo) sh(name string, args ...string) string {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = shellQuote(a)
	}
	fmt.Printf("$ %s %s\n", filepath.Base(name), strings.Join(shown, " "))
	cmd := exec.CommandContext(d.ctx, name, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password, "PGCONNECT_TIMEOUT=5")
	out, _ := cmd.CombinedOutput()
	text := strings.TrimRight(string(out), "\n")
	if text != "" {
		fmt.Println(indent(text))
	}
	return text
}

// shellQuote quotes a word so that the printed command can be pasted into
// a shell.
func shellQuote(s string) string {
	switch {
	case s != "" && !strings.ContainsAny(s, " \t\"'$`\\|&;()<>*?"):
		return s
	case !strings.Contains(s, "'"):
		return "'" + s + "'"
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(s) + `"`
}

// lastLine returns the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func (d *demo) dig(server, src, name string) string {
	return d.sh("dig", "@"+server, "-p", fmt.Sprint(d.dnsPort), "-b", src, "+noall", "+answer", name, "A")
}

func (d *demo) conninfo(server, hostaddr string) string {
	return fmt.Sprintf("host=%s.postgres.database.azure.com hostaddr=%s port=%d sslmode=verify-full sslrootcert=%s user=app dbname=appdb",
		server, hostaddr, d.gwPort, d.ca)
}

func (d *demo) psql(conninfo, sql string) string {
	return d.sh("psql", "-X", "-q", "-A", "-t", conninfo, "-c", sql)
}

func (d *demo) run(bin string) error {
	bin, _ = filepath.Abs(bin)
	d.ctl = filepath.Join(bin, "pgplanectl")
	var err error
	if d.dir, err = os.MkdirTemp("", "pgplane-demo-"); err != nil {
		return err
	}
	fmt.Println("pgplane demo: three appliance nodes, two PostgreSQL servers and two client VNets, all on loopback.")
	fmt.Println("Working directory:", d.dir)

	// Two PostgreSQL servers with certificates of their own; the gateway
	// authenticates clients itself and needs none of its keys on them.
	tlsDir := filepath.Join(d.dir, "tls")
	if _, d.ca, err = gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com", "*.contoso.private.postgres.database.azure.com"}); err != nil {
		return err
	}
	primary, err := pgtest.Start("", pgtest.Options{OwnCertificate: true})
	if err != nil {
		return err
	}
	d.pgs = append(d.pgs, primary)
	standby, err := primary.StartStandby("")
	if err != nil {
		return err
	}
	d.pgs = append(d.pgs, standby)
	primaryPort, standbyPort := fmt.Sprint(d.pgs[0].Port), fmt.Sprint(d.pgs[1].Port)
	fmt.Printf("PostgreSQL: primary %s, and a streaming replica of it as the standby, %s\n", d.pgs[0].Addr, d.pgs[1].Addr)

	// Three nodes: n1 and n2 hold the gateway addresses, n3 is a witness.
	topo := strings.NewReplacer("PRIMARY", d.pgs[0].Addr, "STANDBY", d.pgs[1].Addr).Replace(topologyText)
	d.dnsPort = benchkit.FreePort("127.0.0.11")
	d.gwPort = benchkit.FreePort("127.0.0.21")
	adminPort := benchkit.FreePort("127.0.0.11")
	d.endpoint = fmt.Sprintf("http://127.0.0.11:%d", adminPort)
	var gossip []string
	var raft []string
	for i := 1; i <= 3; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1%d:%d", i, benchkit.FreePort(fmt.Sprintf("127.0.0.1%d", i))))
		raft = append(raft, fmt.Sprintf("127.0.0.1%d:%d", i, benchkit.FreePort(fmt.Sprintf("127.0.0.1%d", i))))
	}
	for i := 0; i < 3; i++ {
		ndir := filepath.Join(d.dir, fmt.Sprintf("n%d", i+1))
		os.MkdirAll(ndir, 0o755)
		os.WriteFile(filepath.Join(ndir, "topology.yaml"), []byte(topo), 0o644)
		bind, extra := fmt.Sprintf("127.0.0.1%d", i+1), ""
		switch i {
		case 0:
			bind += " 127.0.1.250 127.0.2.250"
			extra = fmt.Sprintf("gateway 127.0.0.21:%d\n        admin 127.0.0.11:%d", d.gwPort, adminPort)
		case 1:
			extra = fmt.Sprintf("gateway 127.0.0.22:%d", d.gwPort)
		case 2:
			extra = fmt.Sprintf("cluster_gateway_port %d", d.gwPort)
		}
		corefile := fmt.Sprintf(`.:%d {
    bind %s
    pgplane topology.yaml {
        %s
        gateway_tls dev %s
        gateway_auth_user pgplane_auth auth.pgpass
        node_id %d
        cluster_name n%d
        cluster_members n1 n2 n3
        cluster_bind %s
        cluster_raft %s
        cluster_join %s
        cluster_dev
        state state
    }
    errors
}
`, d.dnsPort, bind, extra, tlsDir, i+1, i+1, gossip[i], raft[i], strings.Join(gossip, " "))
		if i == 2 {
			// The witness: no gateway, and a monitoring role of its own line
			// to learn the backends' roles with.
			corefile = strings.Replace(corefile, "        gateway_tls dev "+tlsDir+"\n        gateway_auth_user pgplane_auth auth.pgpass\n",
				"        cluster_monitor_user pgplane_auth auth.pgpass\n", 1)
		}
		os.WriteFile(filepath.Join(ndir, "Corefile"), []byte(corefile), 0o644)
		n, err := benchkit.StartAppliance(filepath.Join(bin, "pgplane"), ndir, "")
		if err != nil {
			return err
		}
		d.nodes = append(d.nodes, n)
	}
	for i := range d.nodes {
		if !d.waitFor(15*time.Second, func() bool {
			return strings.Contains(d.quiet("dig", fmt.Sprintf("@127.0.0.1%d", i+1), "-p", fmt.Sprint(d.dnsPort), "+short", "postgres.database.azure.com", "SOA"), "hostmaster")
		}) {
			return fmt.Errorf("node n%d did not start:\n%s", i+1, d.nodes[i].Log.String())
		}
	}
	fmt.Printf("Nodes: n1 127.0.0.11 (gateway 127.0.0.21:%d, admin API), n2 127.0.0.12 (gateway 127.0.0.22), n3 127.0.0.13 (witness); DNS on port %d\n", d.gwPort, d.dnsPort)
	fmt.Println("VNets: app-vnet 127.0.1.0/24 (linked to contoso.private…, resolver 127.0.1.250), hub-vnet 127.0.2.0/24 (peered, not linked, resolver 127.0.2.250)")
	d.waitFor(5*time.Second, func() bool {
		return strings.Contains(d.quiet(d.ctl, "cluster", "show", "--endpoint", d.endpoint), "n3      alive")
	})

	private := "orders-db.postgres.database.azure.com"
	d.step("DNS from a VNet linked to the private zone: the name is a CNAME to the private zone, then the private address")
	out := d.dig("127.0.0.11", "127.0.1.10", private)
	d.expect(strings.Contains(out, "orders-db.contoso.private.postgres.database.azure.com.") && strings.Contains(out, "127.0.1.4"), "CNAME to orders-db.contoso.private… and A 127.0.1.4")

	d.step("The same name through app-vnet's resolver address, with nslookup")
	out = d.sh("nslookup", "-port="+fmt.Sprint(d.dnsPort), private, "127.0.1.250")
	d.expect(strings.Contains(out, "canonical name = orders-db.contoso.private.postgres.database.azure.com") && strings.Contains(out, "Address: 127.0.1.4"), "nslookup answers 127.0.1.4")

	d.step("From hub-vnet, peered but not linked: the private record does not resolve (peering gives reachability, not names)")
	out = d.sh("nslookup", "-port="+fmt.Sprint(d.dnsPort), private, "127.0.2.250")
	d.expect(strings.Contains(out, "NXDOMAIN") && !strings.Contains(out, "127.0.1.4"), "NXDOMAIN for the private record")

	d.step("A public server's name leads to the region's active gateway address")
	out = d.dig("127.0.0.13", "127.0.0.1", "sales-db.postgres.database.azure.com")
	d.expect(strings.Contains(out, "eastus2.control.postgres.database.azure.com.") && strings.Contains(out, "127.0.0.21"), "CNAME to eastus2.control… and A 127.0.0.21")

	sales := d.conninfo("sales-db", "127.0.0.21")
	d.step("psql through the gateway with verify-full: the firewall has no rule for this client yet")
	out = d.psql(sales, "SELECT 1")
	d.expect(strings.Contains(out, "no firewall rule of server \"sales-db\" admits client address 127.0.0.1"), "refused, with the client address and how to fix it")

	d.step("The rule that fixes it, made through n1's admin API, enforced by every node")
	out = d.sh(d.ctl, "firewall-rule", "create", "--endpoint", d.endpoint, "--server", "sales-db", "--name", "laptop", "--start-ip-address", "127.0.0.1", "--end-ip-address", "127.0.0.1")
	d.expect(strings.Contains(out, "laptop  127.0.0.1"), "the rule is created")
	out = d.psql(sales, "SELECT 'connected to port ' || inet_server_port()")
	d.expect(out == "connected to port "+primaryPort, "psql reaches the primary, the gateway's certificate verified (sslmode=verify-full)")

	d.step("An order is written on the primary; the standby replicates it")
	out = d.psql(sales, "CREATE TABLE orders (id serial, item text); INSERT INTO orders (item) VALUES ('placed before the failover') RETURNING item")
	replicated := d.waitFor(5*time.Second, func() bool {
		got, _ := d.pgs[1].Psql(pgtest.Database, "SELECT item FROM orders")
		return got == "placed before the failover"
	})
	d.expect(out == "placed before the failover" && replicated, "the row is written through the gateway, and the standby has it")

	d.step("Failover: the primary PostgreSQL crashes while a client keeps reconnecting")
	loop := d.startLoop(sales)
	// The crash comes once the client is connecting to the primary (a
	// loaded machine can take longer than a second for the first login).
	d.waitFor(10*time.Second, func() bool { return loop.reached(primaryPort) })
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("$ (the primary, port %s, is stopped with an immediate shutdown; nobody promotes the standby by hand: pgplane.promote auto)\n", primaryPort)
	crashed := time.Now()
	d.pgs[0].Crash()
	flipped := d.waitFor(20*time.Second, func() bool {
		for i := 1; i <= 3; i++ {
			if !strings.HasSuffix(d.quiet("dig", fmt.Sprintf("@127.0.0.1%d", i), "-p", fmt.Sprint(d.dnsPort), "-b", "127.0.1.10", "+short", private, "A"), "127.0.1.5") {
				return false
			}
		}
		return true
	})
	fmt.Printf("  every node answers 127.0.1.5 for %s %s after the crash\n", private, time.Since(crashed).Round(10*time.Millisecond))
	d.waitFor(10*time.Second, func() bool { return loop.reached(standbyPort) })
	time.Sleep(time.Second)
	lines := loop.stop()
	fmt.Println("  the client's loop, one connection every 250 ms:")
	fmt.Println(indent(strings.Join(lines, "\n")))
	d.expect(flipped && loop.reached(primaryPort) && loop.reached(standbyPort), "the name flipped on all three nodes and the client, reconnecting by the same name, reached the standby")
	out = d.dig("127.0.0.12", "127.0.1.10", private)
	d.expect(strings.Contains(out, "127.0.1.5"), "n2 answers the standby's address")
	out = d.psql(sales, "INSERT INTO orders (item) VALUES ('placed after the failover'); SELECT string_agg(item, ', ' ORDER BY id) || ' (port ' || inet_server_port() || ')' FROM orders")
	d.expect(out == "placed before the failover, placed after the failover (port "+standbyPort+")", "the same name reaches the promoted standby, which has the order written before the crash and takes new ones")

	d.step("The cluster as n1 sees it")
	out = d.sh(d.ctl, "cluster", "show", "--endpoint", d.endpoint)
	// orders-db and sales-db share their backends: the promotion of the
	// standby is recorded under whichever server's decision came first.
	promoted := strings.Contains(out, "promote/orders-db") || strings.Contains(out, "promote/sales-db")
	d.expect(strings.Contains(out, "a flip needs 2 of 3 members") && promoted && strings.Contains(out, "the name follows the primary") &&
		strings.Contains(out, "backend/orders-db/standby  n1 primary, n2 primary, n3 primary"), "three members, the promotion after the grace, and the name following the primary")

	d.step("A gateway node fails: n1, which holds the active gateway address 127.0.0.21, is killed")
	gatewayName := "eastus2.control.postgres.database.azure.com"
	resolving := d.startResolvingLoop(func() (string, string) {
		addr := lastLine(d.quiet("dig", "@127.0.0.13", "-p", fmt.Sprint(d.dnsPort), "+short", "sales-db.postgres.database.azure.com", "A"))
		return d.conninfo("sales-db", addr), addr
	})
	time.Sleep(time.Second)
	fmt.Println("$ kill -9 <n1>   (a client resolves sales-db through n3 before each connection)")
	killed := time.Now()
	d.nodes[0].Kill()
	flipped = d.waitFor(15*time.Second, func() bool {
		for i := 2; i <= 3; i++ {
			if d.quiet("dig", fmt.Sprintf("@127.0.0.1%d", i), "-p", fmt.Sprint(d.dnsPort), "+short", gatewayName, "A") != "127.0.0.22" {
				return false
			}
		}
		return true
	})
	fmt.Printf("  n2 and n3 answer 127.0.0.22 for %s %s after the kill\n", gatewayName, time.Since(killed).Round(10*time.Millisecond))
	d.waitFor(10*time.Second, func() bool { return resolving.reached("via 127.0.0.22") })
	time.Sleep(time.Second)
	lines = resolving.stop()
	fmt.Println("  the client's loop:")
	fmt.Println(indent(strings.Join(lines, "\n")))
	d.expect(flipped && resolving.reached("via 127.0.0.21") && resolving.reached("via 127.0.0.22"),
		"the region's name flipped to the secondary gateway address, and the client reconnected through n2's gateway")
	return d.ctx.Err()
}

// quiet runs a command without printing it.
func (d *demo) quiet(name string, args ...string) string {
	out, _ := exec.CommandContext(d.ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func (d *demo) waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && d.ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// clientLoop is a client reconnecting every 250 ms and recording which
// backend port answered, or the error.
type clientLoop struct {
	mu    sync.Mutex
	lines []string
	ports map[string]bool
	done  chan struct{}
	wg    sync.WaitGroup
}

var firstLine = regexp.MustCompile(`[^\n]*`)

func (d *demo) startLoop(conninfo string) *clientLoop {
	return d.startResolvingLoop(func() (string, string) { return conninfo, "" })
}

// startResolvingLoop is a client loop whose connection string may change
// each time: target returns it and the address it goes to ("" to leave it
// out of the record).
func (d *demo) startResolvingLoop(target func() (conninfo, via string)) *clientLoop {
	l := &clientLoop{ports: map[string]bool{}, done: make(chan struct{})}
	start := time.Now()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-l.done:
				return
			case <-d.ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			conninfo, via := target()
			cmd := exec.CommandContext(d.ctx, "psql", "-X", "-A", "-t", conninfo, "-c", "SELECT inet_server_port()")
			cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password, "PGCONNECT_TIMEOUT=2")
			out, err := cmd.CombinedOutput()
			text := strings.TrimSpace(string(out))
			line := fmt.Sprintf("t+%4.1fs  ", time.Since(start).Seconds())
			if via != "" {
				line += "via " + via + ": "
			}
			l.mu.Lock()
			if err == nil {
				l.ports[text] = true
				if via != "" {
					l.ports["via "+via] = true
				}
				line += "connected to port " + text
			} else {
				line += "error: " + firstLine.FindString(text)
			}
			l.lines = append(l.lines, line)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *clientLoop) reached(port string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ports[port]
}

func (l *clientLoop) stop() []string {
	close(l.done)
	l.wg.Wait()
	return l.lines
}
