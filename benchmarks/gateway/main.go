// Command gateway is the gateway benchmark: pgbench -S against PostgreSQL
// directly, through pgplane's gateway, through PgBouncer (session mode,
// terminating TLS) and through HAProxy (mode tcp), with and without client
// TLS, in alternating order, several rounds, reporting medians, ratios to
// direct, the -C connection rate, and each proxy's CPU time per transaction.
// It prints figures; it never fails on a time.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/pgwire"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	bin := flag.String("bin", "bin/pgplane", "the appliance binary")
	out := flag.String("out", "benchmarks/gateway/out", "directory for configuration, logs and results")
	rounds := flag.Int("rounds", 5, "rounds, alternating the order of targets")
	duration := flag.Duration("duration", 20*time.Second, "length of a pgbench -S run")
	connDuration := flag.Duration("conn-duration", 10*time.Second, "length of a pgbench -C run")
	clients := flag.Int("clients", 16, "pgbench -c")
	flag.IntVar(&loggedInSessions, "logged-in", 500, "idle logged-in sessions for the memory measurement")
	flag.IntVar(&idleSessions, "idle", 5000, "idle TLS sessions for the memory measurement (0: none)")
	flag.BoolVar(&syscallDetail, "syscall-detail", false, "print each run's system calls by kind (perf) to stderr")
	flag.StringVar(&profileTo, "profile", "", "write a CPU profile of pgplane during its first TLS run to this file")
	flag.StringVar(&profileMode, "profile-mode", "select", "which run to profile: select or connect")
	flag.IntVar(&profileSeconds, "profile-seconds", 5, "length of the CPU profile (shorter than the run)")
	flag.StringVar(&compareBin, "compare", "", "a second appliance binary, run as pgplane-compare with pgplane's settings (before and after a change, in the same run)")
	flag.StringVar(&perfRecordTo, "perf-record", "", "directory for perf record files (kernel and user stacks) of each proxy's first pgbench -S run with client TLS")
	flag.Parse()
	if err := run(*bin, *out, *rounds, *duration, *connDuration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1)
	}
}

// profileTo, when set, names the file for a CPU profile of pgplane during
// its first run of profileMode with client TLS.
var profileTo, profileMode string

// profileSeconds is the profile's length.
var profileSeconds int

// perfRecordTo, when set, is where perf record writes a profile of each
// proxy's first select run with client TLS, kernel included (pprof sees a
// system call as one frame).
var perfRecordTo string

// compareBin, when set, is a second binary measured beside pgplane.
var compareBin string

// perfRecorded lists the proxies already recorded.
var perfRecorded = map[string]bool{}

// syscallDetail prints each run's system calls by kind.
var syscallDetail bool

// pprofAddr is where the appliance serves pprof.
var pprofAddr string

// target is a way to reach PostgreSQL.
type target struct {
	name string
	pid  int               // the proxy process whose CPU is measured; 0 for direct
	conn func(bool) string // libpq connection string, with or without client TLS
}

// result is one pgbench run.
type result struct {
	tps        float64
	xacts      int
	cpuPerXact time.Duration
	// syscallsPerXact is the proxy's system calls per transaction, counted
	// by perf (raw_syscalls:sys_enter); 0 where perf cannot count them.
	syscallsPerXact float64
}

func run(bin, out string, rounds int, d, connD time.Duration, clients int) error {
	bin, _ = filepath.Abs(bin)
	out, _ = filepath.Abs(out)
	os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	os.Chmod(out, 0o755)
	tlsDir := filepath.Join(out, "tls")
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com"}); err != nil {
		return err
	}
	cert, _ := os.ReadFile(filepath.Join(tlsDir, gateway.DevCertFile))
	keyPEM, _ := os.ReadFile(filepath.Join(tlsDir, gateway.DevKeyFile))
	pg, err := pgtest.Start("", pgtest.Options{Cert: cert, Key: keyPEM, Conf: "max_connections = 700\nshared_buffers = 128MB\n"})
	if err != nil {
		return err
	}
	defer func() { pg.Stop(); os.RemoveAll(pg.Dir) }()
	if o, err := pgbench(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", pg.Port, pgtest.User, pgtest.Database), "-i", "-s", "10", "-q"); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, o)
	}

	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	start := func(name string, cmd *exec.Cmd, addr string) (int, error) {
		logf, _ := os.Create(filepath.Join(out, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}
		if err := cmd.Start(); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		procs = append(procs, cmd)
		if err := waitListen(addr); err != nil {
			b, _ := os.ReadFile(filepath.Join(out, name+".log"))
			return 0, fmt.Errorf("%s: %w\n%s", name, err, b)
		}
		return cmd.Process.Pid, nil
	}

	// pgplane: public servers admitting loopback, one requiring TLS.
	gwPort, dnsPort := benchkit.FreePort("127.0.0.1"), benchkit.FreePort("127.0.0.1")
	pprofAddr = fmt.Sprintf("127.0.0.1:%d", benchkit.FreePort("127.0.0.1"))
	topo := fmt.Sprintf(`regions: [{name: bench, gateways: [127.0.0.1, 127.0.0.2]}]
servers:
  - {name: bench-db, region: bench, access: public, backends: {primary: "%[1]s"}, firewallRules: [{name: lo, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}]}
  - {name: bench-plain, region: bench, access: public, backends: {primary: "%[1]s"}, parameters: {require_secure_transport: "off"}, firewallRules: [{name: lo, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}]}
`, pg.Addr)
	os.WriteFile(filepath.Join(out, "topology.yaml"), []byte(topo), 0o644)
	// The gateway's auth role (gateway_auth terminate, the default): every
	// pgplane below looks verifiers up with it.
	authFile, err := pgtest.WriteAuthPassfile(out)
	if err != nil {
		return err
	}
	os.WriteFile(filepath.Join(out, "Corefile"), []byte(fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    pprof %s\n    pgplane topology.yaml {\n        gateway 127.0.0.1:%d\n        gateway_tls dev tls\n        gateway_auth_user pgplane_auth %s\n        gateway_max_connections 6000\n        gateway_handshake_timeout 2m\n    }\n}\n", dnsPort, pprofAddr, gwPort, authFile)), 0o644)
	pgplanePID, err := start("pgplane", exec.Command(bin, "-conf", filepath.Join(out, "Corefile")), fmt.Sprintf("127.0.0.1:%d", gwPort))
	if err != nil {
		return err
	}
	// The same with a plain TCP backend leg (gateway_backend_tls disable), the
	// like-for-like comparison with HAProxy's mode tcp.
	plainDir := filepath.Join(out, "plain-backend")
	os.MkdirAll(plainDir, 0o755)
	gwPlainPort := benchkit.FreePort("127.0.0.1")
	os.WriteFile(filepath.Join(plainDir, "topology.yaml"), []byte(topo), 0o644)
	os.WriteFile(filepath.Join(plainDir, "Corefile"), []byte(fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    pgplane topology.yaml {\n        gateway 127.0.0.1:%d\n        gateway_tls dev %s\n        gateway_backend_tls disable\n        gateway_auth_user pgplane_auth %s\n        gateway_max_connections 1000\n    }\n}\n", benchkit.FreePort("127.0.0.1"), gwPlainPort, tlsDir, authFile)), 0o644)
	plainPID, err := start("pgplane-plain-backend", exec.Command(bin, "-conf", filepath.Join(plainDir, "Corefile")), fmt.Sprintf("127.0.0.1:%d", gwPlainPort))
	if err != nil {
		return err
	}
	// gateway_relay_threads 0: each session copies with two goroutines of
	// its own (the data path before the relay loops), beside the loops.
	passDir := filepath.Join(out, "goroutines")
	os.MkdirAll(passDir, 0o755)
	gwPassPort := benchkit.FreePort("127.0.0.1")
	os.WriteFile(filepath.Join(passDir, "topology.yaml"), []byte(topo), 0o644)
	os.WriteFile(filepath.Join(passDir, "Corefile"), []byte(fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    pgplane topology.yaml {\n        gateway 127.0.0.1:%d\n        gateway_tls dev %s\n        gateway_auth_user pgplane_auth %s\n        gateway_relay_threads 0\n        gateway_max_connections 1000\n    }\n}\n", benchkit.FreePort("127.0.0.1"), gwPassPort, tlsDir, authFile)), 0o644)
	passPID, err := start("pgplane-goroutines", exec.Command(bin, "-conf", filepath.Join(passDir, "Corefile")), fmt.Sprintf("127.0.0.1:%d", gwPassPort))
	if err != nil {
		return err
	}

	// -compare: another build with pgplane's settings.
	var comparePID, gwComparePort int
	if compareBin != "" {
		compareDir := filepath.Join(out, "compare")
		os.MkdirAll(compareDir, 0o755)
		gwComparePort = benchkit.FreePort("127.0.0.1")
		os.WriteFile(filepath.Join(compareDir, "topology.yaml"), []byte(topo), 0o644)
		os.WriteFile(filepath.Join(compareDir, "Corefile"), []byte(fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    pgplane topology.yaml {\n        gateway 127.0.0.1:%d\n        gateway_tls dev %s\n        gateway_auth_user pgplane_auth %s\n        gateway_max_connections 1000\n    }\n}\n", benchkit.FreePort("127.0.0.1"), gwComparePort, tlsDir, authFile)), 0o644)
		if comparePID, err = start("pgplane-compare", exec.Command(compareBin, "-conf", filepath.Join(compareDir, "Corefile")), fmt.Sprintf("127.0.0.1:%d", gwComparePort)); err != nil {
			return err
		}
	}

	// PgBouncer: session pooling, terminating client TLS, TLS to the server.
	bouncerPort := benchkit.FreePort("127.0.0.1")
	os.WriteFile(filepath.Join(out, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n", pgtest.User, pgtest.Password)), 0o644)
	os.WriteFile(filepath.Join(out, "pgbouncer.ini"), []byte(fmt.Sprintf(`[databases]
%s = host=127.0.0.1 port=%d dbname=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = session
max_client_conn = 6000
default_pool_size = 550
client_tls_sslmode = allow
client_tls_cert_file = %s
client_tls_key_file = %s
server_tls_sslmode = require
logfile =
log_connections = 0
log_disconnections = 0
`, pgtest.Database, pg.Port, pgtest.Database, bouncerPort, filepath.Join(out, "userlist.txt"),
		filepath.Join(tlsDir, gateway.DevCertFile), filepath.Join(tlsDir, gateway.DevKeyFile))), 0o644)
	bouncer := exec.Command("pgbouncer", filepath.Join(out, "pgbouncer.ini"))
	if err := asPostgres(bouncer, out, tlsDir); err != nil {
		return err
	}
	bouncerPID, err := start("pgbouncer", bouncer, fmt.Sprintf("127.0.0.1:%d", bouncerPort))
	if err != nil {
		return err
	}

	// HAProxy: mode tcp, the client's TLS (if any) passes through to PostgreSQL.
	haPort := benchkit.FreePort("127.0.0.1")
	os.WriteFile(filepath.Join(out, "haproxy.cfg"), []byte(fmt.Sprintf(`global
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
listen pg
    bind 127.0.0.1:%d
    server pg %s
`, haPort, pg.Addr)), 0o644)
	haPID, err := start("haproxy", exec.Command("haproxy", "-db", "-f", filepath.Join(out, "haproxy.cfg")), fmt.Sprintf("127.0.0.1:%d", haPort))
	if err != nil {
		return err
	}

	sslmode := func(tls bool) string {
		if tls {
			return "sslmode=require"
		}
		return "sslmode=disable"
	}
	base := fmt.Sprintf("user=%s dbname=%s", pgtest.User, pgtest.Database)
	targets := []target{
		{"direct", 0, func(tls bool) string { return fmt.Sprintf("host=127.0.0.1 port=%d %s %s", pg.Port, base, sslmode(tls)) }},
		{"pgplane", pgplanePID, func(tls bool) string {
			if tls {
				return fmt.Sprintf("host=bench-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d %s sslmode=require", gwPort, base)
			}
			return fmt.Sprintf("host=127.0.0.1 port=%d user=%s@bench-plain dbname=%s sslmode=disable", gwPort, pgtest.User, pgtest.Database)
		}},
		// HAProxy runs next to pgplane in every round (the order reverses
		// from round to round), so that their per-round ratio compares
		// runs under the same load of the shared machine.
		{"haproxy", haPID, func(tls bool) string { return fmt.Sprintf("host=127.0.0.1 port=%d %s %s", haPort, base, sslmode(tls)) }},
		{"pgplane-plainbe", plainPID, func(tls bool) string {
			if tls {
				return fmt.Sprintf("host=bench-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d %s sslmode=require", gwPlainPort, base)
			}
			return fmt.Sprintf("host=127.0.0.1 port=%d user=%s@bench-plain dbname=%s sslmode=disable", gwPlainPort, pgtest.User, pgtest.Database)
		}},
		{"pgplane-goroutines", passPID, func(tls bool) string {
			if tls {
				return fmt.Sprintf("host=bench-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d %s sslmode=require", gwPassPort, base)
			}
			return fmt.Sprintf("host=127.0.0.1 port=%d user=%s@bench-plain dbname=%s sslmode=disable", gwPassPort, pgtest.User, pgtest.Database)
		}},
		{"pgbouncer", bouncerPID, func(tls bool) string {
			return fmt.Sprintf("host=127.0.0.1 port=%d %s %s", bouncerPort, base, sslmode(tls))
		}},
	}
	if compareBin != "" {
		targets = slices.Insert(targets, 2, target{"pgplane-compare", comparePID, func(tls bool) string {
			if tls {
				return fmt.Sprintf("host=bench-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d %s sslmode=require", gwComparePort, base)
			}
			return fmt.Sprintf("host=127.0.0.1 port=%d user=%s@bench-plain dbname=%s sslmode=disable", gwComparePort, pgtest.User, pgtest.Database)
		}})
	}
	byName := func(name string) target {
		i := slices.IndexFunc(targets, func(t target) bool { return t.name == name })
		return targets[i]
	}
	fmt.Printf("pgbench -S -c %d -j 2: %s per run (-C runs %s), %d rounds, order alternating; PostgreSQL 15 on loopback, scale 10\n\n", clients, d, connD, rounds)
	type key struct {
		target string
		tls    bool
		mode   string
	}
	results := map[key][]result{}
	for r := 0; r < rounds; r++ {
		order := slices.Clone(targets)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, tls := range []bool{true, false} {
			for _, mode := range []string{"select", "connect"} {
				for _, t := range order {
					args := []string{"-S", "-n", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(int(d.Seconds()))}
					if mode == "connect" {
						args = []string{"-S", "-n", "-C", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(int(connD.Seconds()))}
					}
					res, err := measure(t, tls, args)
					if err != nil {
						return fmt.Errorf("%s (tls %v, %s): %w", t.name, tls, mode, err)
					}
					results[key{t.name, tls, mode}] = append(results[key{t.name, tls, mode}], res)
					fmt.Printf("round %d %-15s tls=%-5v %-7s %9.0f tps  cpu/xact %6s\n", r+1, t.name, tls, mode, res.tps, cpuString(t, res))
				}
			}
		}
	}
	var report bytes.Buffer
	for _, mode := range []string{"select", "connect"} {
		if rounds == 0 {
			break // -rounds 0: the memory measurement alone
		}
		for _, tls := range []bool{true, false} {
			title := map[string]string{"select": "pgbench -S (TPS)", "connect": "pgbench -S -C (new connection per transaction: connections/s)"}[mode]
			fmt.Fprintf(&report, "\n%s, client TLS %v, median of %d\n", title, onOff(tls), rounds)
			fmt.Fprintf(&report, "  %-19s %10s %8s %14s %16s\n", "target", "tps", "ratio", "proxy CPU/xact", "syscalls/xact")
			direct := medianOf(results[key{"direct", tls, mode}], func(r result) float64 { return r.tps })
			for _, t := range targets {
				rs := results[key{t.name, tls, mode}]
				tps := medianOf(rs, func(r result) float64 { return r.tps })
				cpu, calls := "-", "-"
				if t.pid != 0 {
					cpu = time.Duration(medianOf(rs, func(r result) float64 { return float64(r.cpuPerXact) })).Round(100 * time.Nanosecond).String()
					if n := medianOf(rs, func(r result) float64 { return r.syscallsPerXact }); n > 0 {
						calls = fmt.Sprintf("%.2f", n)
					}
				}
				fmt.Fprintf(&report, "  %-19s %10.0f %7.2fx %14s %16s\n", t.name, tps, tps/direct, cpu, calls)
			}
			if mode == "select" {
				pg, ha := results[key{"pgplane", tls, mode}], results[key{"haproxy", tls, mode}]
				fmt.Fprintf(&report, "  pgplane / haproxy, median of per-round ratios: TPS %.2fx, CPU/xact %.2fx\n",
					medianRatio(pg, ha, func(r result) float64 { return r.tps }),
					medianRatio(pg, ha, func(r result) float64 { return float64(r.cpuPerXact) }))
				if cmp := results[key{"pgplane-compare", tls, mode}]; len(cmp) > 0 {
					fmt.Fprintf(&report, "  pgplane / pgplane-compare, median of per-round ratios: TPS %.2fx, CPU/xact %.2fx\n",
						medianRatio(pg, cmp, func(r result) float64 { return r.tps }),
						medianRatio(pg, cmp, func(r result) float64 { return float64(r.cpuPerXact) }))
				}
			}
		}
	}
	if idleSessions > 0 {
		// Sessions logged in (each holds a backend connection, within
		// PostgreSQL's max_connections and PgBouncer's pool), one query
		// run, then idle.
		proxied := loggedInSessions
		fmt.Fprintf(&report, "\nMemory: %d idle client sessions, logged in with client TLS, one query run, backend connected\n", proxied)
		fmt.Fprintf(&report, "  %-19s %12s %12s %14s\n", "target", "RSS before", "RSS after", "per session")
		var perSession []float64
		for _, t := range []target{byName("pgplane"), byName("pgplane-goroutines"), byName("pgbouncer")} {
			before, after, err := loggedInMemory(t.pid, t.conn(true)+" password="+pgtest.Password, proxied)
			if err != nil {
				return fmt.Errorf("%s logged-in sessions: %w", t.name, err)
			}
			per := float64(after-before) / float64(proxied)
			perSession = append(perSession, per)
			fmt.Fprintf(&report, "  %-19s %9d KiB %9d KiB %10.1f KiB\n", t.name, before, after, per)
		}
		fmt.Fprintf(&report, "  ratio pgplane/pgbouncer per session: %.2fx (goroutines: %.2fx)\n", perSession[0]/perSession[2], perSession[1]/perSession[2])

		fmt.Fprintf(&report, "\nMemory: %d idle client sessions, TLS done, startup packet not sent (the backend holds none)\n", idleSessions)
		fmt.Fprintf(&report, "  %-19s %12s %12s %14s\n", "target", "RSS before", "RSS after", "per session")
		perSession = perSession[:0]
		for _, t := range []struct {
			name string
			pid  int
			addr string
		}{{"pgplane", pgplanePID, fmt.Sprintf("127.0.0.1:%d", gwPort)}, {"pgbouncer", bouncerPID, fmt.Sprintf("127.0.0.1:%d", bouncerPort)}} {
			before, after, err := idleMemory(t.pid, t.addr, idleSessions)
			if err != nil {
				return fmt.Errorf("%s idle sessions: %w", t.name, err)
			}
			per := float64(after-before) / float64(idleSessions)
			perSession = append(perSession, per)
			fmt.Fprintf(&report, "  %-16s %9d KiB %9d KiB %10.1f KiB\n", t.name, before, after, per)
		}
		fmt.Fprintf(&report, "  ratio pgplane/pgbouncer per session: %.2fx\n", perSession[0]/perSession[1])
	}
	fmt.Print(report.String())
	return os.WriteFile(filepath.Join(out, "results.txt"), report.Bytes(), 0o644)
}

// idleSessions is how many idle sessions the memory measurement opens.
var idleSessions, loggedInSessions int

// idleMemory opens n client sessions to addr (SSLRequest and the TLS
// handshake, then nothing), from source addresses 127.1.x.y, 50 each, and
// returns the process's RSS in KiB before and once all are open.
func idleMemory(pid int, addr string, n int) (before, after int, err error) {
	runtime.GC()
	time.Sleep(time.Second)
	if before, err = benchkit.RSSKiB(pid); err != nil {
		return 0, 0, err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		src := net.IPv4(127, 1, byte(i/50/250), byte(i/50%250+1))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return 0, 0, fmt.Errorf("session %d: %w", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(pgwire.SSLRequest()); err != nil {
			return 0, 0, err
		}
		var s [1]byte
		if _, err := io.ReadFull(c, s[:]); err != nil || s[0] != 'S' {
			return 0, 0, fmt.Errorf("session %d: SSLRequest answered %q, %v", i, s[0], err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "bench-db.postgres.database.azure.com"}) // #nosec G402 -- a load generator
		if err := tc.Handshake(); err != nil {
			return 0, 0, fmt.Errorf("session %d: TLS: %w", i, err)
		}
		conns[len(conns)-1] = tc
	}
	time.Sleep(2 * time.Second)
	after, err = benchkit.RSSKiB(pid)
	return before, after, err
}

// loggedInMemory opens n sessions with conninfo (a full login), runs one
// query on each and leaves them idle, and returns the process's RSS in KiB
// before and once all are open.
func loggedInMemory(pid int, conninfo string, n int) (before, after int, err error) {
	time.Sleep(time.Second)
	if before, err = benchkit.RSSKiB(pid); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var conns []*pgconn.PgConn
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	// pgconn does not take libpq's hostaddr (it would send it as a run-time
	// parameter): the name is kept for TLS, and never looked up anywhere:
	// the address is loopback's.
	cfg, err := pgconn.ParseConfig(strings.Replace(conninfo, "hostaddr=127.0.0.1 ", "", 1))
	if err != nil {
		return 0, 0, err
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	for i := 0; i < n; i++ {
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			return 0, 0, fmt.Errorf("session %d: %w", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			return 0, 0, fmt.Errorf("session %d: %w", i, err)
		}
	}
	time.Sleep(2 * time.Second)
	after, err = benchkit.RSSKiB(pid)
	return before, after, err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func cpuString(t target, r result) string {
	if t.pid == 0 {
		return "-"
	}
	return r.cpuPerXact.Round(100 * time.Nanosecond).String()
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \((?:without initial connection time|including reconnection times)?`)
var xactRE = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

// measure runs pgbench against a target and reads the proxy's CPU time
// before and after.
func measure(t target, tls bool, args []string) (result, error) {
	before := cpuTime(t.pid)
	if mode := map[bool]string{true: "connect", false: "select"}[args[2] == "-C"]; profileTo != "" && t.name == "pgplane" && tls && mode == profileMode {
		go func(file string) {
			if out, err := exec.Command("curl", "-s", "-o", file, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, profileSeconds)).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "profile: %v %s\n", err, out)
			}
		}(profileTo)
		profileTo = ""
	}
	stopRecord := func() {}
	if perfRecordTo != "" && t.pid != 0 && tls && args[2] != "-C" && !perfRecorded[t.name] {
		perfRecorded[t.name] = true
		stopRecord = perfRecord(t.pid, filepath.Join(perfRecordTo, t.name+".perf.data"))
	}
	syscalls := countSyscalls(t.pid)
	out, err := pgbench(t.conn(tls), args...)
	stopRecord()
	after := cpuTime(t.pid)
	calls := syscalls()
	if err != nil {
		return result{}, fmt.Errorf("%v\n%s", err, out)
	}
	m, x := tpsRE.FindStringSubmatch(out), xactRE.FindStringSubmatch(out)
	if m == nil || x == nil {
		return result{}, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	var r result
	r.tps, _ = strconv.ParseFloat(m[1], 64)
	r.xacts, _ = strconv.Atoi(x[1])
	if t.pid != 0 && r.xacts > 0 {
		r.cpuPerXact = (after - before) / time.Duration(r.xacts)
		r.syscallsPerXact = calls / float64(r.xacts)
	}
	return r, nil
}

// countSyscalls starts counting a process's system calls with perf, and
// returns the function that stops and reads the count (0 when perf is
// missing or cannot count them here).
func countSyscalls(pid int) func() float64 {
	if pid == 0 {
		return func() float64 { return 0 }
	}
	var out bytes.Buffer
	events := "raw_syscalls:sys_enter"
	if syscallDetail {
		events += ",syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_getpid,syscalls:sys_enter_tgkill,context-switches,task-clock"
	}
	cmd := exec.Command("perf", "stat", "-x,", "-e", events, "-p", strconv.Itoa(pid))
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return func() float64 { return 0 }
	}
	return func() float64 {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		if syscallDetail {
			fmt.Fprintf(os.Stderr, "perf stat of pid %d:\n%s", pid, out.String())
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Split(line, ","); len(f) > 2 && strings.Contains(line, "raw_syscalls:sys_enter") {
				n, _ := strconv.ParseFloat(f[0], 64)
				return n
			}
		}
		return 0
	}
}

// perfRecord starts perf record on a process, with call graphs, and
// returns the function that stops it.
func perfRecord(pid int, file string) func() {
	os.MkdirAll(filepath.Dir(file), 0o755)
	cmd := exec.Command("perf", "record", "-q", "-g", "-o", file, "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "perf record: %v\n", err)
		return func() {}
	}
	return func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}
}

func pgbench(conninfo string, args ...string) (string, error) {
	cmd := exec.Command("pgbench", append(args, conninfo)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cpuTime is a process's user and system CPU time, from /proc (clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// medianRatio is the median over rounds of f(a[i]) / f(b[i]): runs of the
// same round, taken one after the other, share the machine's load.
func medianRatio(a, b []result, f func(result) float64) float64 {
	var ratios []float64
	for i := range min(len(a), len(b)) {
		if d := f(b[i]); d > 0 {
			ratios = append(ratios, f(a[i])/d)
		}
	}
	if len(ratios) == 0 {
		return 0
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2]
}

func medianOf(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// asPostgres runs a command as the postgres user when we are root
// (PgBouncer refuses to run as root) and lets it read its files.
func asPostgres(cmd *exec.Cmd, dirs ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range dirs {
		filepath.Walk(d, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Pdeathsig: syscall.SIGKILL}
	return nil
}

func waitListen(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("did not listen on " + addr)
}
