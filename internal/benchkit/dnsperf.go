package benchkit

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DNSPerf is one dnsperf result, or several added up.
type DNSPerf struct {
	QPS     float64
	Latency float64 // seconds, mean
	Sent    int
	Lost    int
	Rcodes  string
}

var (
	qpsRE     = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	latencyRE = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+)`)
	sentRE    = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	lostRE    = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	rcodesRE  = regexp.MustCompile(`Response codes:\s+(.*)`)
)

// RunDNSPerf runs one dnsperf per source address at once and adds them up.
// rate limits each process's queries per second; 0 is as fast as it can.
// Each process keeps at most 64 queries outstanding, over UDP.
func RunDNSPerf(port int, queries string, sources []string, d time.Duration, rate int) (DNSPerf, error) {
	return RunDNSPerfWith(DNSPerfOptions{Port: port, Queries: queries, Sources: sources, Duration: d, Rate: rate})
}

// DNSPerfOptions shape a RunDNSPerfWith run.
type DNSPerfOptions struct {
	Server      string // the server's address; "" is 127.0.0.1
	Port        int
	Queries     string   // the query file
	Sources     []string // one dnsperf process per source address
	Duration    time.Duration
	Rate        int    // queries per second per process; 0: as fast as it can
	Outstanding int    // queries in flight per process; 0: 64
	Mode        string // udp (default) or tcp
}

// RunDNSPerfWith is RunDNSPerf with every option.
func RunDNSPerfWith(o DNSPerfOptions) (DNSPerf, error) {
	port, queries, sources, d, rate := o.Port, o.Queries, o.Sources, o.Duration, o.Rate
	outstanding, mode, server := o.Outstanding, o.Mode, o.Server
	if server == "" {
		server = "127.0.0.1"
	}
	if outstanding <= 0 {
		outstanding = 64
	}
	if mode == "" {
		mode = "udp"
	}
	var mu sync.Mutex
	var total DNSPerf
	var errs []error
	var wg sync.WaitGroup
	rcodes := map[string]int{}
	for _, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-s", server, "-p", strconv.Itoa(port), "-a", src, "-d", queries,
				"-l", strconv.Itoa(int(d.Seconds())), "-T", "1", "-c", "1", "-q", strconv.Itoa(outstanding), "-m", mode}
			if rate > 0 {
				args = append(args, "-Q", strconv.Itoa(rate))
			}
			outb, err := exec.Command("dnsperf", args...).CombinedOutput()
			text := string(outb)
			mu.Lock()
			defer mu.Unlock()
			q, l := find(qpsRE, text), find(latencyRE, text)
			if err != nil || q == "" || l == "" {
				errs = append(errs, fmt.Errorf("dnsperf from %s: %v\n%s", src, err, text))
				return
			}
			qps, _ := strconv.ParseFloat(q, 64)
			lat, _ := strconv.ParseFloat(l, 64)
			sent, _ := strconv.Atoi(find(sentRE, text))
			lost, _ := strconv.Atoi(find(lostRE, text))
			total.Latency += lat * qps // weighted by throughput
			total.QPS += qps
			total.Sent += sent
			total.Lost += lost
			for _, f := range regexp.MustCompile(`([A-Z]+) (\d+)`).FindAllStringSubmatch(find(rcodesRE, text), -1) {
				n, _ := strconv.Atoi(f[2])
				rcodes[f[1]] += n
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return total, errors.Join(errs...)
	}
	if total.QPS > 0 {
		total.Latency /= total.QPS
	}
	var parts []string
	for _, k := range []string{"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"} {
		if rcodes[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, rcodes[k]))
		}
	}
	total.Rcodes = strings.Join(parts, ", ")
	return total, nil
}

func find(re *regexp.Regexp, text string) string {
	if m := re.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return ""
}
