package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/pgtest"
)

// soakSlice is how long each run of a load tool lasts: a run is judged as
// a whole, so a run that overlaps a chaos window is excused, and one that
// does not must lose nothing.
const soakSlice = 5 * time.Second

// soakTools is the soak's load from real tools, beside its own probes:
// dnsperf against n3 (never killed) and pgbench -S through the gateway to
// soak-ha, each in back-to-back runs of soakSlice.
type soakTools struct {
	mu                          sync.Mutex
	dnsRuns, dnsSent, dnsLost   int
	pgRuns, pgXacts, pgFailures int
	excusedRuns                 int
}

// String says what the tools did.
func (l *soakTools) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("dnsperf: %d runs, %d queries, %d lost; pgbench -S: %d runs, %d transactions, %d failed; %d runs overlapped chaos windows (excused)",
		l.dnsRuns, l.dnsSent, l.dnsLost, l.pgRuns, l.pgXacts, l.pgFailures, l.excusedRuns)
}

// runDNSPerf runs dnsperf at rate queries per second against n3 until ctx
// ends. Every query must be answered: n3 is never killed.
func (l *soakTools) runDNSPerf(ctx context.Context, t *testing.T, c *replicaCluster, rate int, fails *soakFailures) {
	queries := filepath.Join(t.TempDir(), "soak-queries")
	if err := os.WriteFile(queries, []byte("soak-db.postgres.database.azure.com A\nsales-db.postgres.database.azure.com A\n"), 0o644); err != nil {
		t.Error(err)
		return
	}
	for ctx.Err() == nil {
		r, err := benchkit.RunDNSPerfWith(benchkit.DNSPerfOptions{Server: "127.0.0.13", Port: c.dnsPort, Queries: queries,
			Sources: []string{"127.0.0.1"}, Duration: soakSlice, Rate: rate, Outstanding: 16})
		l.mu.Lock()
		l.dnsRuns++
		l.dnsSent += r.Sent
		l.dnsLost += r.Lost
		l.mu.Unlock()
		switch {
		case err != nil:
			fails.add("dnsperf", err.Error())
		case r.Lost > 0 || r.Rcodes != fmt.Sprintf("NOERROR %d", r.Sent-r.Lost):
			fails.add("dnsperf", fmt.Sprintf("n3: %d of %d queries lost, answers %s", r.Lost, r.Sent, r.Rcodes))
		}
	}
}

var (
	pgbenchProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	pgbenchFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
)

// runPgbench runs pgbench -S through the gateway to soak-ha (resolved
// through n3 before each run) until ctx ends. A run that fails, aborts a
// client or counts failed transactions is a breach unless it overlaps a
// chaos window.
func (l *soakTools) runPgbench(ctx context.Context, c *replicaCluster, events *soakEvents, fails *soakFailures) {
	for ctx.Err() == nil {
		from := time.Now()
		addr, err := soakResolve(c, 2)
		out := ""
		if err == nil {
			conninfo := fmt.Sprintf("host=soak-ha.postgres.database.azure.com hostaddr=%s port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s connect_timeout=3",
				addr, c.gwPort, pgtest.User, pgtest.Database, c.ca)
			cmd := exec.Command("pgbench", "-n", "-S", "-c", "2", "-j", "1", "-R", "100", "-T", strconv.Itoa(int(soakSlice.Seconds())), conninfo)
			cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password)
			var b []byte
			b, err = cmd.CombinedOutput()
			out = string(b)
		}
		xacts, failed := 0, 0
		if m := pgbenchProcessed.FindStringSubmatch(out); m != nil {
			xacts, _ = strconv.Atoi(m[1])
		}
		if m := pgbenchFailed.FindStringSubmatch(out); m != nil {
			failed, _ = strconv.Atoi(m[1])
		}
		l.mu.Lock()
		l.pgRuns++
		l.pgXacts += xacts
		l.pgFailures += failed
		l.mu.Unlock()
		if err == nil && failed == 0 && xacts > 0 {
			continue
		}
		if events.overlaps(from, time.Now()) {
			l.mu.Lock()
			l.excusedRuns++
			l.mu.Unlock()
		} else {
			fails.add("pgbench", fmt.Sprintf("%v, %d transactions, %d failed: %s", err, xacts, failed, lastLines(out, 4)))
		}
		time.Sleep(200 * time.Millisecond) // a failed run ends at once: not a busy loop
	}
}

// initPgbench makes pgbench's tables on the primary, readable by the
// test's user (the standby streams them).
func initPgbench(t *testing.T, primary *pgtest.Server) {
	t.Helper()
	cmd := exec.Command("pgbench", "-i", "-s", "1", "-q", "-h", primary.Dir, "-p", strconv.Itoa(primary.Port), "-U", "postgres", pgtest.Database)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if out, err := primary.Psql(pgtest.Database, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+pgtest.User); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// overlaps reports whether [from, to] meets a chaos window.
func (e *soakEvents) overlaps(from, to time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.windows {
		if from.Before(w[1]) && !to.Before(w[0].Add(-time.Second)) {
			return true
		}
	}
	return false
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := regexp.MustCompile(`\n+`).Split(s, -1)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprint(lines)
}
