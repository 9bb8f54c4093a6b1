package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/syncbuf"
)

var workDirRE = regexp.MustCompile(`Working directory: (\S+)`)

// SPEC: D2 D4 D5 G1 G5 C2 C3 C4 C5 A1
func TestMakeDemo(t *testing.T) {
	cmd := exec.Command("make", "-s", "demo")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, text)
	}
	steps := []string{"DNS from a VNet linked", "through app-vnet's resolver address", "From hub-vnet, peered but not linked",
		"A public server's name", "the firewall has no rule", "The rule that fixes it", "An order is written on the primary", "Failover:", "The cluster as n1 sees it", "A gateway node fails"}
	for i, s := range steps {
		if !strings.Contains(text, s) {
			t.Errorf("step %d (%s) missing", i+1, s)
		}
	}
	if strings.Contains(text, "✗") || strings.Count(text, "✓") != 13 || !strings.Contains(text, "all 10 steps came out as expected") {
		t.Fatalf("every step's outcome must be as expected:\n%s", text)
	}
	m := workDirRE.FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the demo must say where it works")
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Fatalf("the demo must remove %s on exit", m[1])
	}
}

// SPEC: C4
func TestDemoCleansUpOnInterrupt(t *testing.T) {
	if _, err := os.Stat("../../bin/demo"); err != nil {
		t.Skip("bin/demo is built by TestMakeDemo")
	}
	log := &syncbuf.Buffer{}
	cmd := exec.Command("bin/demo", "-bin", "bin")
	cmd.Dir = "../.."
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the demo to reach its third step", 60*time.Second, func() bool { return strings.Contains(log.String(), "── 3.") })
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if e, ok := err.(*exec.ExitError); !ok || e.ExitCode() != 130 || !strings.Contains(log.String(), "interrupted; everything the demo started is stopped") {
		t.Fatalf("Ctrl-C: %v\n%s", err, log.String())
	}
	m := workDirRE.FindStringSubmatch(log.String())
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Fatalf("the demo must remove %s on Ctrl-C", m[1])
	}
	if out, _ := exec.Command("pgrep", "-f", m[1]).Output(); len(out) > 0 {
		t.Fatalf("processes of the demo are still running: %s", out)
	}
}
