package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// corefileExamples returns the "~~~ corefile" blocks of a README.
func corefileExamples(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur *strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "~~~ corefile":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "~~~":
			out = append(out, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}

var (
	listenRE = regexp.MustCompile(`(?m)^\.:1053 \{`)
	bindRE   = regexp.MustCompile(`(?m)^\s*bind (\S+)`)
	targetRE = regexp.MustCompile(`127\.0\.0\.1:105[34]`)
)

// TestPluginReadmeExamples starts every Corefile example of the plugin's
// README, each on its own free port (forward targets point at the first
// example), and asks each for the apex SOA. SPEC: D1 D6
func TestPluginReadmeExamples(t *testing.T) {
	examples := corefileExamples(t, "../../plugin/pgplane/README.md")
	if len(examples) < 3 {
		t.Fatalf("want at least 3 Corefile examples, found %d", len(examples))
	}
	var resolverPort int
	for i, ex := range examples {
		bind := bindRE.FindStringSubmatch(ex)
		if bind == nil {
			t.Fatalf("example %d binds no address; examples must stay on loopback:\n%s", i+1, ex)
		}
		port := freePort(t, bind[1])
		if i == 0 {
			resolverPort = port
		}
		corefile := listenRE.ReplaceAllString(ex, fmt.Sprintf(".:%d {", port))
		corefile = targetRE.ReplaceAllString(corefile, fmt.Sprintf("127.0.0.1:%d", resolverPort))
		corefile = strings.ReplaceAll(corefile, "127.0.0.1:15432", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		corefile = strings.ReplaceAll(corefile, "127.0.0.21:15432", fmt.Sprintf("127.0.0.21:%d", freePort(t, "127.0.0.21")))
		corefile = strings.ReplaceAll(corefile, "127.0.0.11:7946", fmt.Sprintf("127.0.0.11:%d", freePort(t, "127.0.0.11")))
		adminPort := freePort(t)
		corefile = strings.ReplaceAll(corefile, "127.0.0.1:8530", fmt.Sprintf("127.0.0.1:%d", adminPort))
		corefile = strings.ReplaceAll(corefile, "127.0.0.1:8181", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		dir := t.TempDir()
		writeFile(t, dir, "topology.yaml", devTopology(t))
		startNode(t, dir, corefile, fmt.Sprintf("%s:%d", bind[1], port), "")
		r := dig(t, "@"+bind[1], "-p", fmt.Sprint(port), "postgres.database.azure.com.", "SOA")
		if r.status != "NOERROR" || len(r.answer) != 1 {
			t.Fatalf("example %d does not answer the apex SOA:\n%s\n%s", i+1, corefile, r.out)
		}
		if strings.Contains(ex, "admin 127.0.0.1:8530") {
			endpoint := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
			if out, code := pgplanectlAt(t, endpoint, "firewall-rule", "create", "--server", "reports-db", "--name", "office", "--start-ip-address", "203.0.113.1", "--end-ip-address", "203.0.113.9"); code != 0 {
				t.Fatalf("example %d: the admin API must take a change: %s", i+1, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "state", "raft", "applied.json")); err != nil {
				t.Fatalf("example %d: the change must be in state/ beside the Corefile: %v", i+1, err)
			}
		}
	}
}
