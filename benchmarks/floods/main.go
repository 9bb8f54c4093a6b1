// Command floods measures a legitimate client of each of pgplane's doors
// (DNS over UDP and TCP, the gateway, the admin API) while one flood at a
// time hits the appliance (issue 15, point 2): a random-subdomain DNS flood
// at saturation, DNS TCP connections held open, idle gateway connections,
// stalled TLS handshakes, garbage after the SSLRequest, and abuse of the
// admin API. Each scenario prints the legitimate probes' success rate and
// latency beside the same probes with no flood, measured in the same run,
// and the appliance's RSS, threads and open files after it.
//
// Everything runs on loopback: the floods come from 127.0.3.0/24 to
// 127.0.5.0/24, the legitimate client from 127.0.2.0/24.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/miekg/dns"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/pgtest"
)

func main() {
	bin := flag.String("bin", "bin/pgplane", "the appliance binary")
	out := flag.String("out", "benchmarks/floods/out", "directory for configuration, logs and results")
	d := flag.Duration("duration", 15*time.Second, "length of each scenario")
	only := flag.String("only", "", "run only the scenarios whose names contain this")
	flag.StringVar(&extraPlugins, "plugins", "", "CoreDNS directives to add to the server block, ';'-separated (e.g. shed;multisocket)")
	flag.Parse()
	if err := run(*bin, *out, *d, *only); err != nil {
		fmt.Fprintln(os.Stderr, "floods:", err)
		os.Exit(1)
	}
}

const (
	serverName = "flood-db"
	token      = "flood-bench-token"
)

// extraPlugins are CoreDNS directives added to the server block.
var extraPlugins string

// target is the appliance under test.
type target struct {
	dnsPort, gwPort, apiPort int
	pid                      int
}

func run(bin, out string, d time.Duration, only string) error {
	bin, _ = filepath.Abs(bin)
	out, _ = filepath.Abs(out)
	os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tlsDir := filepath.Join(out, "tls")
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com"}); err != nil {
		return err
	}
	pg, err := pgtest.Start("", pgtest.Options{OwnCertificate: true, Conf: "max_connections = 200\n"})
	if err != nil {
		return err
	}
	defer func() { pg.Stop(); os.RemoveAll(pg.Dir) }()

	t := target{dnsPort: benchkit.FreePort("127.0.0.1"), gwPort: benchkit.FreePort("127.0.0.1"), apiPort: benchkit.FreePort("127.0.0.1")}
	topo := fmt.Sprintf(`regions: [{name: bench, gateways: [127.0.0.1]}]
servers:
  - {name: %s, region: bench, access: public, backends: {primary: "%s"}, firewallRules: [{name: loopback, startIpAddress: 127.0.0.1, endIpAddress: 127.255.255.255}]}
`, serverName, pg.Addr)
	if err := os.WriteFile(filepath.Join(out, "topology.yaml"), []byte(topo), 0o644); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(out, "token"), []byte(token+"\n"), 0o600)
	var extra strings.Builder
	for _, p := range strings.Split(extraPlugins, ";") {
		if p = strings.TrimSpace(p); p != "" {
			fmt.Fprintf(&extra, "    %s\n", p)
		}
	}
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1
%s    pgplane topology.yaml {
        gateway 127.0.0.1:%d
        gateway_tls dev tls
        gateway_auth_user pgplane_auth auth.pgpass
        admin 127.0.0.1:%d
        admin_token_file token
        state state
    }
}
`, t.dnsPort, extra.String(), t.gwPort, t.apiPort)
	if err := os.WriteFile(filepath.Join(out, "Corefile"), []byte(corefile), 0o644); err != nil {
		return err
	}
	app, err := benchkit.StartAppliance(bin, out, "")
	if err != nil {
		return err
	}
	defer func() {
		app.Stop()
		os.WriteFile(filepath.Join(out, "pgplane.log"), []byte(app.Log.String()), 0o644)
	}()
	t.pid = app.Cmd.Process.Pid
	if err := waitReady(t); err != nil {
		return fmt.Errorf("%w\n%s", err, app.Log.String())
	}

	var report bytes.Buffer
	fmt.Fprintf(&report, "Legitimate probes beside each flood, %s per scenario; one pgplane node (DNS, gateway, admin API), PostgreSQL 15, 2 shared cores\n", d)
	if extraPlugins != "" {
		fmt.Fprintf(&report, "CoreDNS plugins added before pgplane: %s\n", extraPlugins)
	}
	fmt.Fprintf(&report, "probes: dns-udp every 20 ms, dns-tcp every 100 ms (a new connection each), gateway every 200 ms (TLS, SCRAM login, SELECT 1), api every 100 ms (GET /v1/servers)\n\n")
	fmt.Fprintf(&report, "%-18s %-10s %9s %9s %9s  %s\n", "scenario", "probe", "success", "p50", "p99", "flood")
	for _, sc := range scenarios(t, out, d) {
		if only != "" && !strings.Contains(sc.name, only) {
			continue
		}
		stats, summary, err := runScenario(t, sc, d)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		var lines strings.Builder
		for i, p := range probeNames {
			s := stats[p]
			flood := ""
			if i == 0 {
				flood = summary
			}
			fmt.Fprintf(&lines, "%-18s %-10s %8.1f%% %9s %9s  %s\n", sc.name, p, s.successRate(), s.quantile(0.5), s.quantile(0.99), flood)
		}
		rss, _ := benchkit.RSSKiB(t.pid)
		fmt.Fprintf(&lines, "%-18s after it: RSS %d KiB, %d threads, %d open files\n", "", rss, threads(t.pid), openFiles(t.pid))
		fmt.Print(lines.String())
		report.WriteString(lines.String())
	}
	fmt.Println()
	fmt.Print(report.String())
	return os.WriteFile(filepath.Join(out, "results.txt"), report.Bytes(), 0o644)
}

// waitReady waits for the appliance to answer DNS, the gateway and the API.
func waitReady(t target) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		errs := []error{probeDNS(t, "udp"), probeGateway(t), probeAPI(t)}
		if err := errors.Join(errs...); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("appliance not ready: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scenario is one flood.
type scenario struct {
	name string
	// flood runs until ctx ends and says what it did.
	flood func(ctx context.Context) string
}

var probeNames = []string{"dns-udp", "dns-tcp", "gateway", "api"}

// stats are one probe's outcomes.
type stats struct {
	mu        sync.Mutex
	ok, total int
	latencies []time.Duration // of the successes
}

func (s *stats) add(lat time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if err == nil {
		s.ok++
		s.latencies = append(s.latencies, lat)
	}
}

func (s *stats) successRate() float64 {
	if s.total == 0 {
		return 0
	}
	return 100 * float64(s.ok) / float64(s.total)
}

func (s *stats) quantile(q float64) string {
	if len(s.latencies) == 0 {
		return "-"
	}
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	return l[int(q*float64(len(l)-1))].Round(10 * time.Microsecond).String()
}

// runScenario runs a flood and the probes side by side for d.
func runScenario(t target, sc scenario, d time.Duration) (map[string]*stats, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	floodDone := make(chan string, 1)
	go func() {
		if sc.flood == nil {
			<-ctx.Done()
			floodDone <- "none"
			return
		}
		floodDone <- sc.flood(ctx)
	}()
	time.Sleep(time.Second) // let the flood build up
	all := map[string]*stats{}
	var wg sync.WaitGroup
	for _, p := range []struct {
		name  string
		every time.Duration
		do    func() error
	}{
		{"dns-udp", 20 * time.Millisecond, func() error { return probeDNS(t, "udp") }},
		{"dns-tcp", 100 * time.Millisecond, func() error { return probeDNS(t, "tcp") }},
		{"gateway", 200 * time.Millisecond, func() error { return probeGateway(t) }},
		{"api", 100 * time.Millisecond, func() error { return probeAPI(t) }},
	} {
		s := &stats{}
		all[p.name] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(p.every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				err := p.do()
				s.add(time.Since(start), err)
			}
		}()
	}
	wg.Wait()
	summary := <-floodDone
	time.Sleep(2 * time.Second) // the appliance settles before the next scenario
	return all, summary, nil
}

// The legitimate client's probes, from 127.0.2.0/24.

func probeDNS(t target, network string) error {
	c := &dns.Client{Net: network, Timeout: time.Second}
	if network == "udp" {
		c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 2, 1)}}
	} else {
		c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, 1)}}
	}
	m := new(dns.Msg)
	m.SetQuestion(serverName+".postgres.database.azure.com.", dns.TypeA)
	r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", t.dnsPort))
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return fmt.Errorf("rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}

func probeGateway(t target) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s.postgres.database.azure.com port=%d user=%s password=%s dbname=%s sslmode=require",
		serverName, t.gwPort, pgtest.User, pgtest.Password, pgtest.Database))
	if err != nil {
		return err
	}
	// The name is kept for TLS's server name and never looked up: the
	// address is loopback's.
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, 2)}}
	cfg.DialFunc = dialer.DialContext
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "SELECT 1").ReadAll()
	return err
}

var apiClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
	DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, 3)}}).DialContext}}

func probeAPI(t target) error {
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/v1/servers", t.apiPort), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// The floods.

func scenarios(t target, out string, d time.Duration) []scenario {
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", t.dnsPort)
	gwAddr := fmt.Sprintf("127.0.0.1:%d", t.gwPort)
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", t.apiPort)
	return []scenario{
		{name: "none"},
		{name: "dns-udp-random", flood: func(ctx context.Context) string {
			// A random-subdomain flood at saturation: dnsperf as fast as
			// it goes, from 4 addresses, names that do not exist.
			return dnsFlood(ctx, t, out, benchkit.DNSPerfOptions{Sources: []string{"127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4"}})
		}},
		{name: "dns-udp-overload", flood: func(ctx context.Context) string {
			// The same, past saturation: 4 × 5,000 queries in flight, more
			// than the socket's receive queue holds.
			return dnsFlood(ctx, t, out, benchkit.DNSPerfOptions{Sources: []string{"127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4"}, Outstanding: 5000})
		}},
		{name: "dns-tcp-random", flood: func(ctx context.Context) string {
			// A random-subdomain flood over TCP at saturation.
			return dnsFlood(ctx, t, out, benchkit.DNSPerfOptions{Sources: []string{"127.0.3.5", "127.0.3.6"}, Mode: "tcp"})
		}},
		{name: "dns-tcp-held", flood: func(ctx context.Context) string {
			// 1,000 TCP connections held open, each asking a random name
			// every second so that idle timeouts do not close them.
			var held, answered atomic.Int64
			var peak atomic.Int64
			go func() {
				time.Sleep(500 * time.Millisecond)
				peak.Store(held.Load())
			}()
			workers(1000, func(i int) {
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 3, byte(10+i%20))}
				c, err := (&net.Dialer{LocalAddr: src}).DialContext(ctx, "tcp", dnsAddr)
				if err != nil {
					return
				}
				defer c.Close()
				held.Add(1)
				defer held.Add(-1)
				conn := &dns.Conn{Conn: c}
				for ctx.Err() == nil {
					m := new(dns.Msg)
					m.SetQuestion(randomLabel()+".postgres.database.azure.com.", dns.TypeA)
					c.SetDeadline(time.Now().Add(2 * time.Second))
					if conn.WriteMsg(m) != nil {
						return
					}
					if _, err := conn.ReadMsg(); err != nil {
						return
					}
					answered.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			})
			return fmt.Sprintf("%d TCP connections held, %d random names answered", peak.Load(), answered.Load())
		}},
		{name: "gw-idle-conns", flood: func(ctx context.Context) string {
			// 20 addresses each keep 150 connections open that send
			// nothing, opened again when the gateway closes them (its
			// handshake timeout). Past 100 per address
			// (gateway_max_connections_per_source) that address alone is
			// refused (G12).
			var opened, closed atomic.Int64
			workers(20*150, func(i int) {
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 4, byte(1+i/150))}
				redial(ctx, src, gwAddr, func(net.Conn) {}, &opened, &closed)
			})
			return fmt.Sprintf("3,000 idle connections kept open from 20 addresses: %d opened, %d closed by the gateway", opened.Load(), closed.Load())
		}},
		{name: "gw-tls-stall", flood: func(ctx context.Context) string {
			// 2,000 connections that ask for TLS and stop in the middle of
			// their ClientHello, opened again as the handshake timeout
			// closes them.
			var made, cut atomic.Int64
			workers(2000, func(i int) {
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 4, byte(100+i%40))}
				redial(ctx, src, gwAddr, func(c net.Conn) {
					c.Write(sslRequest())
					c.Read(make([]byte, 1))
					// A TLS record header promising 512 bytes, and 40 of them.
					c.Write(append([]byte{0x16, 0x03, 0x01, 0x02, 0x00}, make([]byte, 40)...))
				}, &made, &cut)
			})
			return fmt.Sprintf("%d stalled handshakes opened from 40 addresses, %d closed by the gateway", made.Load(), cut.Load())
		}},
		{name: "gw-garbage", flood: func(ctx context.Context) string {
			// 32 workers: SSLRequest, then 512 random bytes, as fast as
			// the gateway closes them.
			var sessions atomic.Int64
			workers(32, func(i int) {
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 4, byte(200+i%32))}
				junk := make([]byte, 512)
				for ctx.Err() == nil {
					c, err := (&net.Dialer{LocalAddr: src}).DialContext(ctx, "tcp", gwAddr)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.Write(sslRequest())
					c.Read(make([]byte, 1))
					rand.Read(junk)
					c.Write(junk)
					io.Copy(io.Discard, c)
					c.Close()
					sessions.Add(1)
				}
			})
			return fmt.Sprintf("%d garbage sessions closed by the gateway (%.0f/s)", sessions.Load(), float64(sessions.Load())/d.Seconds())
		}},
		{name: "api-abuse", flood: func(ctx context.Context) string {
			// Token guessing, bodies over the limit, slow bodies and bad
			// JSON, each from addresses of their own.
			codes := map[string]map[int]int{}
			var mu sync.Mutex
			count := func(kind string, code int) {
				mu.Lock()
				if codes[kind] == nil {
					codes[kind] = map[int]int{}
				}
				codes[kind][code]++
				mu.Unlock()
			}
			client := func(last byte) *http.Client {
				return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
					DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 5, last)}}).DialContext}}
			}
			do := func(c *http.Client, kind, method, path, tok string, body io.Reader) {
				req, _ := http.NewRequestWithContext(ctx, method, apiURL+path, body)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						count(kind, 0)
					}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count(kind, resp.StatusCode)
			}
			var wg sync.WaitGroup
			loop := func(n int, f func()) {
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil {
							f()
						}
					}()
				}
			}
			guess, big, bad, slow := client(1), client(2), client(3), client(4)
			loop(4, func() { do(guess, "wrong token", "GET", "/v1/servers", randomLabel(), nil) })
			loop(2, func() {
				do(big, "body over 1 MiB", "PUT", "/v1/servers/"+serverName+"/firewall-rules/big", token, bytes.NewReader(bytes.Repeat([]byte(" "), 1<<20+1)))
			})
			loop(4, func() {
				do(bad, "bad JSON", "PUT", "/v1/servers/"+serverName+"/firewall-rules/bad", token, strings.NewReader(`{"startIpAddress": "127.0.0.1", `))
			})
			loop(20, func() {
				do(slow, "slow body", "PUT", "/v1/servers/"+serverName+"/firewall-rules/slow", token, &slowReader{ctx: ctx, n: 200})
			})
			wg.Wait()
			parts := []string{"20 bodies at 1 byte/s held open"}
			for _, kind := range []string{"wrong token", "body over 1 MiB", "bad JSON"} {
				var cs []string
				for _, code := range slices.Sorted(mapsKeys(codes[kind])) {
					cs = append(cs, fmt.Sprintf("%d×%d", code, codes[kind][code]))
				}
				parts = append(parts, kind+": "+strings.Join(cs, " "))
			}
			return strings.Join(parts, "; ")
		}},
	}
}

// dnsFlood runs dnsperf with random names that do not exist until ctx
// ends, and says what it did.
func dnsFlood(ctx context.Context, t target, out string, o benchkit.DNSPerfOptions) string {
	file := filepath.Join(out, "random-names.txt")
	if _, err := os.Stat(file); err != nil {
		var b strings.Builder
		for range 100000 {
			fmt.Fprintf(&b, "%s.postgres.database.azure.com A\n", randomLabel())
		}
		os.WriteFile(file, []byte(b.String()), 0o644)
	}
	dl, _ := ctx.Deadline()
	o.Port, o.Queries, o.Duration = t.dnsPort, file, time.Until(dl).Truncate(time.Second)
	r, err := benchkit.RunDNSPerfWith(o)
	if err != nil {
		return "dnsperf: " + err.Error()
	}
	mode := o.Mode
	if mode == "" {
		mode = "udp"
	}
	return fmt.Sprintf("dnsperf over %s: %.0f qps answered, %d of %d lost, %s", mode, r.QPS, r.Lost, r.Sent, r.Rcodes)
}

// redial holds connections to addr from src, one at a time, until ctx
// ends: it dials (again after 100 ms when a dial fails), lets use write to
// the connection, then reads until the peer closes it. It counts each
// connection opened, and in closedByPeer each closed by the peer (the
// gateway's limits) rather than by the end of the flood.
func redial(ctx context.Context, src *net.TCPAddr, addr string, use func(net.Conn), opened, closedByPeer *atomic.Int64) {
	for ctx.Err() == nil {
		c, err := (&net.Dialer{LocalAddr: src}).DialContext(ctx, "tcp", addr)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		opened.Add(1)
		stop := context.AfterFunc(ctx, func() { c.Close() })
		use(c)
		io.Copy(io.Discard, c)
		if stop() {
			closedByPeer.Add(1)
		}
		c.Close()
	}
}

// workers runs f(0) to f(n-1) at once and waits for them.
func workers(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

func mapsKeys(m map[int]int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// slowReader is a request body that sends one byte a second.
type slowReader struct {
	ctx context.Context
	n   int
}

func (r *slowReader) Read(b []byte) (int, error) {
	if r.n == 0 || len(b) == 0 {
		return 0, io.EOF
	}
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-time.After(time.Second):
	}
	r.n--
	b[0] = ' '
	return 1, nil
}

func sslRequest() []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
}

func randomLabel() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

func threads(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Threads:") {
			var n int
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(l, "Threads:")), &n)
			return n
		}
	}
	return 0
}

func openFiles(pid int) int {
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(entries)
}
