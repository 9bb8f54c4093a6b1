// Command dns is the DNS benchmark: dnsperf against pgplane and, in the same
// run, against CoreDNS's own file plugin serving the same records from a zone
// file (the same binary, so the same CoreDNS). Queries come from many VNets'
// addresses at once. It also measures reloads of the topology under load.
// It prints figures and ratios; it never fails on a time.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/syncbuf"
	"github.com/pgplane/pgplane/topology"

	"github.com/miekg/dns"
)

func main() {
	bin := flag.String("bin", "bin/pgplane", "the appliance binary")
	out := flag.String("out", "benchmarks/dns/out", "directory for generated files and results")
	rounds := flag.Int("rounds", 5, "rounds per server, alternating order")
	duration := flag.Duration("duration", 5*time.Second, "length of one dnsperf run")
	clients := flag.Int("clients", 8, "concurrent dnsperf processes, each from another VNet")
	flag.Parse()
	if err := run(*bin, *out, *rounds, *duration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "bench-dns:", err)
		os.Exit(1)
	}
}

func run(bin, out string, rounds int, duration time.Duration, clients int) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	bin, _ = filepath.Abs(bin)
	out, _ = filepath.Abs(out)
	sc := benchkit.DNSScale{Servers: 10000, Zones: 1000, VNets: 500, Regions: 10}
	g, err := benchkit.GenerateDNS(out, sc)
	if err != nil {
		return err
	}
	if _, _, err := topology.Load(g.Topology); err != nil {
		return fmt.Errorf("generated topology is invalid: %w", err)
	}
	fmt.Printf("topology: %d servers, %d private DNS zones, %d VNets, %d regions; %d dnsperf clients from distinct VNets, %s per run, %d rounds\n\n",
		sc.Servers, sc.Zones, sc.VNets, sc.Regions, clients, duration, rounds)

	port := benchkit.FreePort("127.0.0.1")
	servers := []struct {
		name     string
		corefile string
	}{
		{"pgplane", fmt.Sprintf("postgres.database.azure.com:%d {\n    bind 127.0.0.1\n    pgplane %s\n}\n", port, g.Topology)},
		{"file", fmt.Sprintf("postgres.database.azure.com:%d {\n    bind 127.0.0.1\n    file %s\n}\n", port, g.ZoneFile)},
	}
	results := map[string][]benchkit.DNSPerf{}
	for r := 0; r < rounds; r++ {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			srv := servers[i]
			proc, err := start(bin, filepath.Join(out, srv.name), srv.corefile, port)
			if err != nil {
				return fmt.Errorf("%s: %w", srv.name, err)
			}
			var sources []string
			for c := 0; c < clients; c++ {
				sources = append(sources, g.Sources[(r*clients+c)*37%len(g.Sources)])
			}
			p, err := benchkit.RunDNSPerf(port, g.Queries, sources, duration, 0)
			proc.stop()
			if err != nil {
				return fmt.Errorf("%s: %w", srv.name, err)
			}
			fmt.Printf("round %d %-8s %9.0f qps  avg latency %6.3f ms  lost %d  %s\n", r+1, srv.name, p.QPS, p.Latency*1000, p.Lost, p.Rcodes)
			results[srv.name] = append(results[srv.name], p)
		}
	}
	pq, fq := median(results["pgplane"], func(p benchkit.DNSPerf) float64 { return p.QPS }), median(results["file"], func(p benchkit.DNSPerf) float64 { return p.QPS })
	pl, fl := median(results["pgplane"], func(p benchkit.DNSPerf) float64 { return p.Latency }), median(results["file"], func(p benchkit.DNSPerf) float64 { return p.Latency })
	var report bytes.Buffer
	fmt.Fprintf(&report, "\nDNS, median of %d rounds          QPS   avg latency\n", rounds)
	fmt.Fprintf(&report, "  CoreDNS file (baseline)   %9.0f   %8.3f ms\n", fq, fl*1000)
	fmt.Fprintf(&report, "  pgplane, %d VNet views   %9.0f   %8.3f ms\n", sc.VNets, pq, pl*1000)
	fmt.Fprintf(&report, "  ratio pgplane/file        %9.2fx  %8.2fx\n", pq/fq, pl/fl)

	rl, err := reloadUnderLoad(bin, out, g, port)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	fmt.Fprintf(&report, "\nReload of the %d-server topology (in the running server, under %d qps)\n", sc.Servers, reloadQPS)
	fmt.Fprintf(&report, "  reloads after an edit: %d, median %s, max %s (read, parse, validate, snapshot, answers)\n", len(rl.times), rl.median(), slices.Max(rl.times))
	fmt.Fprintf(&report, "  queries %d, lost %d, %s\n", rl.perf.Sent, rl.perf.Lost, rl.perf.Rcodes)
	allocs, err := reloadAllocs(g.Topology)
	if err != nil {
		return fmt.Errorf("reload allocations: %w", err)
	}
	fmt.Fprintf(&report, "  in-process, go test -bench BenchmarkReload (cold: first load; edit: one link changed):\n%s\n", allocs)
	fmt.Print(report.String())
	return os.WriteFile(filepath.Join(out, "results.txt"), report.Bytes(), 0o644)
}

const reloadQPS = 4000

// reloadResult is what the reload-under-load run measured.
type reloadResult struct {
	times []time.Duration
	perf  benchkit.DNSPerf
}

func (r reloadResult) median() time.Duration {
	s := slices.Clone(r.times)
	slices.Sort(s)
	return s[len(s)/2]
}

var loadedRE = regexp.MustCompile(`loaded \([^)]*\): serial \d+ in ([0-9.]+[µmn]?s)`)

// reloadUnderLoad starts pgplane with a quick reload interval, sends a steady
// load from four VNets, and rewrites the topology file five times (a link
// added, then removed). It returns the reload times the server logged and
// what the load saw.
func reloadUnderLoad(bin, out string, g benchkit.DNSTopology, port int) (reloadResult, error) {
	var res reloadResult
	topo, err := os.ReadFile(g.Topology)
	if err != nil {
		return res, err
	}
	live := filepath.Join(out, "reload", "topology.yaml")
	os.MkdirAll(filepath.Dir(live), 0o755)
	if err := os.WriteFile(live, topo, 0o644); err != nil {
		return res, err
	}
	corefile := fmt.Sprintf("postgres.database.azure.com:%d {\n    bind 127.0.0.1\n    pgplane %s {\n        reload 200ms\n    }\n}\n", port, live)
	proc, err := start(bin, filepath.Join(out, "reload"), corefile, port)
	if err != nil {
		return res, err
	}
	defer proc.stop()
	changed := bytes.Replace(topo, []byte("links: [vnet-000, vnet-250]"), []byte("links: [vnet-000, vnet-250, vnet-001]"), 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Second)
		for i := 0; i < 5; i++ {
			text := changed
			if i%2 == 1 {
				text = topo
			}
			os.WriteFile(live, text, 0o644)
			time.Sleep(1200 * time.Millisecond)
		}
	}()
	res.perf, err = benchkit.RunDNSPerf(port, g.Queries, g.Sources[:4], 8*time.Second, reloadQPS/4)
	<-done
	if err != nil {
		return res, err
	}
	for _, m := range loadedRE.FindAllStringSubmatch(proc.log.String(), -1) {
		d, err := time.ParseDuration(m[1])
		if err == nil {
			res.times = append(res.times, d)
		}
	}
	if len(res.times) == 0 {
		return res, fmt.Errorf("no reload was logged:\n%s", proc.log.String())
	}
	return res, nil
}

// reloadAllocs runs the plugin's reload benchmark on the generated topology:
// a cold first load and a reload after one edit.
func reloadAllocs(path string) (string, error) {
	abs, _ := filepath.Abs(path)
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "BenchmarkReload", "-benchmem", "-benchtime", "10x", "./appliance")
	cmd.Env = append(os.Environ(), "PGPLANE_BENCH_TOPOLOGY="+abs)
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v\n%s", err, outb)
	}
	var lines []string
	for _, m := range regexp.MustCompile(`BenchmarkReload/(\w+)\S*\s+\d+\s+(\d+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op`).FindAllStringSubmatch(string(outb), -1) {
		ns, _ := strconv.Atoi(m[2])
		b, _ := strconv.Atoi(m[3])
		lines = append(lines, fmt.Sprintf("    %-5s %9s per reload, %6.1f MB, %8s allocations", m[1], time.Duration(ns).Round(10*time.Microsecond), float64(b)/1e6, m[4]))
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("no result in:\n%s", outb)
	}
	return strings.Join(lines, "\n"), nil
}

// process is a server the benchmark started; stop ends it by its PID.
type process struct {
	cmd *exec.Cmd
	log *syncbuf.Buffer
}

func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// start runs the binary with a Corefile in dir and waits until it answers.
func start(bin, dir, corefile string, port int) (*process, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(cf, []byte(corefile), 0o644); err != nil {
		return nil, err
	}
	lb := &syncbuf.Buffer{}
	p := &process{cmd: exec.Command(bin, "-conf", cf), log: lb}
	p.cmd.Stdout, p.cmd.Stderr = lb, lb
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m := new(dns.Msg)
		m.SetQuestion("postgres.database.azure.com.", dns.TypeSOA)
		if r, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(m, fmt.Sprintf("127.0.0.1:%d", port)); err == nil && r.Rcode == dns.RcodeSuccess {
			return p, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("server did not answer:\n%s", lb.String())
}

func median(ps []benchkit.DNSPerf, f func(benchkit.DNSPerf) float64) float64 {
	v := make([]float64, len(ps))
	for i, p := range ps {
		v[i] = f(p)
	}
	slices.Sort(v)
	return v[len(v)/2]
}
