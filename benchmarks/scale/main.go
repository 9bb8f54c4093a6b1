// Command scale measures pgplane at 10,000, 100,000 and 1,000,000 servers
// beside CoreDNS's file plugin holding the same names, in the same run: the
// time from start to the first answer, RSS and bytes per server after start
// (and the peak RSS by then), the time of a run-time change (a server created
// through the admin API) until the node answers for it, queries per second,
// and RSS and bytes per server after those queries.
//
// Usage: go run ./benchmarks/scale -bin bin/pgplane [-sizes 10000,100000] [-out DIR]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pgplane/pgplane/internal/benchkit"

	"github.com/miekg/dns"
)

func main() {
	bin := flag.String("bin", "bin/pgplane", "the appliance binary")
	sizes := flag.String("sizes", "10000,100000,1000000", "numbers of servers, comma separated")
	out := flag.String("out", "benchmarks/scale/out", "working directory")
	changes := flag.Int("changes", 5, "run-time changes timed at each size")
	perfTime := flag.Duration("perf", 5*time.Second, "dnsperf duration at each size")
	flag.Parse()
	if err := run(*bin, *out, *sizes, *changes, *perfTime); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

// result is what one server measured at one size.
type result struct {
	start   time.Duration
	rssKiB  int
	anonKiB int           // RssAnon beside rssKiB: without the binary's pages
	peakKiB int           // the highest RSS by the first answer (VmHWM)
	after   int           // RSS after the changes, KiB
	change  time.Duration // median; 0 for file
	qps     float64
	loaded  int // RSS after the queries, KiB: the heap grown to its GC goal under load
}

func run(bin, out, sizes string, changes int, perfTime time.Duration) error {
	bin, _ = filepath.Abs(bin)
	out, _ = filepath.Abs(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	emptyR, err := emptyRSS(bin, out)
	if err != nil {
		return fmt.Errorf("empty CoreDNS: %w", err)
	}
	empty, emptyAnon := emptyR.rssKiB, emptyR.anonKiB
	fmt.Printf("empty CoreDNS (file plugin, one SOA): RSS %.1f MB, of which anonymous %.1f MB\n\n", float64(empty)/1024, float64(emptyAnon)/1024)
	var report bytes.Buffer
	fmt.Fprintf(&report, "%-9s %-8s %9s %9s %11s %11s %12s %13s %12s %9s %13s %11s\n", "servers", "server", "start", "RSS MB", "B/server", "anon B/srv", "peak RSS MB", "change→answer", "RSS after MB", "qps", "RSS loaded MB", "B/server")
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 20 {
			return fmt.Errorf("size %q: want a number of servers, at least 20", s)
		}
		dir := filepath.Join(out, strconv.Itoa(n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		g, err := benchkit.GenerateDNS(dir, benchkit.ScaleShape(n))
		if err != nil {
			return err
		}
		file, err := measure(bin, filepath.Join(dir, "file"), "file "+g.ZoneFile, g, 0, perfTime)
		if err != nil {
			return fmt.Errorf("file at %d: %w", n, err)
		}
		state := filepath.Join(dir, "pgplane", "state")
		os.RemoveAll(state)
		pg, err := measure(bin, filepath.Join(dir, "pgplane"), "pgplane "+g.Topology+" {\n        state "+state+"\n        admin 127.0.0.1:%ADMIN%\n    }", g, changes, perfTime)
		if err != nil {
			return fmt.Errorf("pgplane at %d: %w", n, err)
		}
		perServer := func(kib int) float64 { return float64(kib-empty) * 1024 / float64(n) }
		anonPerServer := func(r result) float64 { return float64(r.anonKiB-emptyAnon) * 1024 / float64(n) }
		for _, row := range []struct {
			name string
			r    result
		}{{"file", file}, {"pgplane", pg}} {
			change := "-"
			if row.r.change > 0 {
				change = row.r.change.Round(100 * time.Microsecond).String()
			}
			fmt.Fprintf(&report, "%-9d %-8s %9s %9.1f %11.0f %11.0f %12.1f %13s %12.1f %9.0f %13.1f %11.0f\n", n, row.name, row.r.start.Round(time.Millisecond), float64(row.r.rssKiB)/1024, perServer(row.r.rssKiB),
				anonPerServer(row.r), float64(row.r.peakKiB)/1024, change, float64(row.r.after)/1024, row.r.qps, float64(row.r.loaded)/1024, perServer(row.r.loaded))
		}
		fmt.Fprintf(&report, "%-9d %-8s %8.2fx %8.2fx %10.2fx %10.2fx %11.2fx %13s %12s %8.2fx %12.2fx %10.2fx\n", n, "ratio", float64(pg.start)/float64(file.start), float64(pg.rssKiB)/float64(file.rssKiB), perServer(pg.rssKiB)/perServer(file.rssKiB),
			anonPerServer(pg)/anonPerServer(file), float64(pg.peakKiB)/float64(file.peakKiB), "", "", pg.qps/file.qps, float64(pg.loaded)/float64(file.loaded), perServer(pg.loaded)/perServer(file.loaded))
		fmt.Printf("%d servers measured\n", n)
		os.RemoveAll(dir) // the 1,000,000-server files take about 300 MB
	}
	fmt.Print("\n" + report.String())
	fmt.Printf("\nbytes per server are (RSS − the empty CoreDNS's) / servers, 2 s after the first answer and\nafter the queries (the heap grown to its GC goal under load); anon B/srv counts anonymous pages\nonly (RssAnon: heap and stacks, not the binary's code); peak RSS is the highest by the\nfirst answer; change→answer is the median of %d server creations through the admin API until\ndig-like queries see the name.\n", changes)
	return os.WriteFile(filepath.Join(out, "results.txt"), report.Bytes(), 0o644)
}

// measure starts bin with one server block around directive, and measures
// it; with changes > 0 it also times run-time changes through the admin API.
func measure(bin, dir, directive string, g benchkit.DNSTopology, changes int, perfTime time.Duration) (result, error) {
	var r result
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	port, admin := benchkit.FreePort("127.0.0.1"), benchkit.FreePort("127.0.0.1")
	directive = strings.ReplaceAll(directive, "%ADMIN%", strconv.Itoa(admin))
	corefile := fmt.Sprintf("postgres.database.azure.com:%d {\n    bind 127.0.0.1\n    %s\n}\n", port, directive)
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile), 0o644); err != nil {
		return r, err
	}
	began := time.Now()
	proc, err := benchkit.StartAppliance(bin, dir, "")
	if err != nil {
		return r, err
	}
	defer proc.Stop()
	if err := waitAnswer(port, "postgres.database.azure.com.", dns.TypeSOA, 15*time.Minute); err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(proc.Log.String()))
	}
	r.start = time.Since(began)
	if r.peakKiB, err = benchkit.PeakRSSKiB(proc.Cmd.Process.Pid); err != nil {
		return r, err
	}
	time.Sleep(2 * time.Second) // let start-up garbage be collected
	if r.rssKiB, err = benchkit.RSSKiB(proc.Cmd.Process.Pid); err != nil {
		return r, err
	}
	if r.anonKiB, err = benchkit.AnonRSSKiB(proc.Cmd.Process.Pid); err != nil {
		return r, err
	}
	var times []time.Duration
	for i := 0; i < changes; i++ {
		name := fmt.Sprintf("scale-new-%d", i)
		t0 := time.Now()
		body := `{"region":"r0","access":"public","backends":{"primary":"127.0.0.1:5432"}}`
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/v1/servers/%s", admin, name), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return r, err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return r, fmt.Errorf("creating %s: HTTP %d", name, resp.StatusCode)
		}
		if err := waitAnswer(port, name+".postgres.database.azure.com.", dns.TypeA, 5*time.Minute); err != nil {
			return r, err
		}
		times = append(times, time.Since(t0))
	}
	r.change = benchkit.Median(times)
	if r.after, err = benchkit.RSSKiB(proc.Cmd.Process.Pid); err != nil {
		return r, err
	}
	if perfTime <= 0 {
		return r, nil
	}
	p, err := benchkit.RunDNSPerf(port, g.Queries, g.Sources[:4], perfTime, 0)
	if err != nil {
		return r, err
	}
	r.qps = p.QPS
	r.loaded, err = benchkit.RSSKiB(proc.Cmd.Process.Pid)
	return r, err
}

// waitAnswer asks until the answer is NOERROR with records.
func waitAnswer(port int, name string, qtype uint16, limit time.Duration) error {
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if a, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port)); err == nil && a.Rcode == dns.RcodeSuccess && len(a.Answer) > 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("no answer for %s %s within %s", name, dns.TypeToString[qtype], limit)
}

// emptyRSS measures the appliance binary serving a zone of one SOA with the
// file plugin: what CoreDNS takes before any name.
func emptyRSS(bin, out string) (result, error) {
	dir := filepath.Join(out, "empty")
	os.MkdirAll(dir, 0o755)
	zone := filepath.Join(dir, "db.empty")
	os.WriteFile(zone, []byte("$ORIGIN postgres.database.azure.com.\n@ 3600 IN SOA ns1.pgplane.invalid. hostmaster.postgres.database.azure.com. 1 3600 600 86400 5\n@ 3600 IN NS ns1.pgplane.invalid.\n"), 0o644)
	return measure(bin, dir, "file "+zone, benchkit.DNSTopology{}, 0, 0)
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
