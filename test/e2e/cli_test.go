package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// singleDash finds a flag printed with one dash, as Go's flag package does.
var singleDash = regexp.MustCompile(`(?m)^  -[a-z]`)

// TestCLIHelp runs the built pgplanectl as a user does: every command
// answers -h and --help with its own help, flags with two dashes, and a
// global flag before the command is taken.
// SPEC: A1
func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{
		{"cluster-key", "--help"}, {"cluster", "show", "-h"}, {"firewall-rule", "create", "--help"},
		{"private-dns", "zone", "create", "-h"}, {"server", "failback", "--help"}, {"certs", "create", "--help"},
	} {
		out, err := exec.Command(ctl, args...).CombinedOutput()
		text := string(out)
		name := strings.Join(args[:len(args)-1], " ")
		if err != nil || !strings.HasPrefix(text, "pgplanectl "+name+": ") || singleDash.MatchString(text) || strings.Contains(text, "Usage of") {
			t.Fatalf("%v: want the command's own help with --flags, exit 0: %v\n%s", args, err, text)
		}
	}
	out, _ := exec.Command(ctl, "firewall-rule", "create", "--help").CombinedOutput()
	for _, want := range []string{"  --start-ip-address", "  --endpoint", "  --query"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("firewall-rule create --help lacks %q:\n%s", want, out)
		}
	}
	out, _ = exec.Command(ctl, "server", "failback", "--help").CombinedOutput()
	if !strings.Contains(string(out), "  --accept-split-brain") {
		t.Fatalf("server failback --help must name its override:\n%s", out)
	}
	// A global flag before the command: the call goes to that endpoint,
	// where nothing listens, and the error says so (not "unknown command").
	out, err := exec.Command(ctl, "--endpoint", "http://127.0.0.1:1", "server", "list").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "127.0.0.1:1") || strings.Contains(string(out), "unknown command") {
		t.Fatalf("--endpoint before the command: %v\n%s", err, out)
	}
}
