// Package e2e runs pgplane as an operator would: the built appliance binary,
// real dig and nslookup, Corefiles and topology files on disk, everything on
// loopback or inside network namespaces the tests create and remove.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/freeport"

	"github.com/pgplane/pgplane/internal/pgtest"

	"github.com/miekg/dns"

	"github.com/pgplane/pgplane/internal/syncbuf"
)

// binary and ctl are the appliance and pgplanectl under test, built once by
// TestMain unless PGPLANE_BIN (and PGPLANECTL_BIN) name them.
var binary, ctl string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	binary, ctl = os.Getenv("PGPLANE_BIN"), os.Getenv("PGPLANECTL_BIN")
	if binary != "" && ctl != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "pgplane-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary, ctl = filepath.Join(dir, "pgplane"), filepath.Join(dir, "pgplanectl")
	for out, pkg := range map[string]string{binary: "../../cmd/pgplane", ctl: "../../cmd/pgplanectl"} {
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg+":", err)
			return 1
		}
	}
	return m.Run()
}

// freePort returns a port that is free for TCP and UDP on every given
// address, below the kernel's ephemeral range (outgoing connections of
// other test packages cannot take it before the appliance binds it), and
// that it has not returned before. CoreDNS binds with SO_REUSEPORT, so a
// port still held by a leftover process would be shared silently: every
// test takes its own.
func freePort(t *testing.T, addrs ...string) int {
	t.Helper()
	port, err := freeport.Pick(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// node is a running appliance process.
type node struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
	addr string        // where to send DNS queries, host:port
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// writeFile writes a file under dir.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNode writes the Corefile into dir and starts the appliance there,
// optionally under `ip netns exec NS`. It waits until addr answers DNS and
// stops the process when the test ends.
func startNode(t *testing.T, dir, corefile, addr string, netns string) *node {
	t.Helper()
	n := launch(t, dir, corefile, netns)
	if netns != "" {
		return n // the caller waits from inside the namespace
	}
	n.addr = addr
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			t.Fatalf("pgplane exited: %v\n%s", n.err, n.log.String())
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion("postgres.database.azure.com.", dns.TypeSOA)
		c := &dns.Client{Timeout: 200 * time.Millisecond}
		if _, _, err := c.Exchange(m, addr); err == nil {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pgplane did not answer on %s:\n%s", addr, n.log.String())
	return nil
}

// startNodeNoProbe starts the binary with a Corefile and does not wait.
func startNodeNoProbe(t *testing.T, dir, corefile string) *node {
	t.Helper()
	return launch(t, dir, corefile, "")
}

// launch writes the Corefile and starts the process; the test's cleanup stops
// it by its PID.
func launch(t *testing.T, dir, corefile, netns string) *node {
	t.Helper()
	writeFile(t, dir, "Corefile", corefile)
	if _, err := pgtest.WriteAuthPassfile(dir); err != nil { // the gateway's auth role (gateway_auth_user)
		t.Fatal(err)
	}
	args := []string{binary, "-conf", filepath.Join(dir, "Corefile")}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	n := &node{t: t, dir: dir, log: &syncbuf.Buffer{}}
	n.cmd = exec.Command(args[0], args[1:]...)
	n.cmd.Dir = dir
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { n.err = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.stop(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			t.Logf("log of %s (%s):\n%s", n.addr, dir, n.log.String())
		}
	})
	return n
}

// stop sends the process a signal and waits up to 5 s for it to exit.
func (n *node) stop(sig syscall.Signal) {
	n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
	}
}

// digResult is what dig printed, split into the parts tests look at.
type digResult struct {
	out       string
	status    string
	flags     []string
	answer    []string // records, whitespace folded: "name ttl IN TYPE data"
	authority []string
}

var (
	statusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	flagsRE  = regexp.MustCompile(`;; flags: ([a-z ]+);`)
)

// dig runs the real dig with the given arguments.
func dig(t *testing.T, args ...string) digResult {
	t.Helper()
	return digIn(t, "", args...)
}

// digIn runs dig, inside a network namespace when netns is set.
func digIn(t *testing.T, netns string, args ...string) digResult {
	t.Helper()
	r, err := digTry(netns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// digTry runs dig and returns an error when dig fails (no answer at all).
func digTry(netns string, args ...string) (digResult, error) {
	argv := append([]string{"dig", "+tries=1", "+time=2"}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return digResult{}, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	r := digResult{out: string(out)}
	if m := statusRE.FindStringSubmatch(r.out); m != nil {
		r.status = m[1]
	}
	if m := flagsRE.FindStringSubmatch(r.out); m != nil {
		r.flags = strings.Fields(m[1])
	}
	var section *[]string
	for _, line := range strings.Split(r.out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			section = &r.answer
		case strings.HasPrefix(line, ";; AUTHORITY SECTION"):
			section = &r.authority
		case strings.HasPrefix(line, ";;"), strings.TrimSpace(line) == "":
			section = nil
		case section != nil && !strings.HasPrefix(line, ";"):
			*section = append(*section, strings.Join(strings.Fields(line), " "))
		}
	}
	return r, nil
}

func (r digResult) hasFlag(f string) bool {
	for _, x := range r.flags {
		if x == f {
			return true
		}
	}
	return false
}

// expect checks status and the exact answer records (TTL included).
func (r digResult) expect(t *testing.T, status string, answer ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %s, want %s:\n%s", r.status, status, r.out)
	}
	if strings.Join(r.answer, "\n") != strings.Join(answer, "\n") {
		t.Fatalf("answer:\n%s\nwant:\n%s\n\nfull output:\n%s", strings.Join(r.answer, "\n"), strings.Join(answer, "\n"), r.out)
	}
	if !r.hasFlag("aa") {
		t.Fatalf("the answer must be authoritative (aa):\n%s", r.out)
	}
}

// expectSOA checks that the authority section is exactly one SOA of zone.
func (r digResult) expectSOA(t *testing.T, zone string) {
	t.Helper()
	if len(r.authority) != 1 || !strings.HasPrefix(r.authority[0], zone+" ") || !strings.Contains(r.authority[0], " SOA ") {
		t.Fatalf("want the SOA of %s in the authority section, got %q:\n%s", zone, r.authority, r.out)
	}
}

// waitFor polls cond until it holds or the deadline passes. It bounds how long
// a test waits for a change to take effect; it measures nothing.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
