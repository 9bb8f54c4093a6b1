package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pgplane/pgplane/appliance"
)

// The Corefile reader takes whatever an operator wrote: it must never
// panic, and a block it finds must hold what the text says.
func FuzzCorefileReader(f *testing.F) {
	f.Add(".:53 {\n    pgplane topology.yaml {\n        gateway 10.0.0.21:5432\n    }\n}\n")
	f.Add(".:53 {\npgplane \"a b.yaml\" {\n# comment\n admin 127.0.0.1:8530 # trailing\n}\n}")
	f.Add(".:53 {\npgplane {\n")
	f.Add(".:53 {\npgplane x\npgplane y {\n}\n\"\n}")
	f.Fuzz(func(t *testing.T, text string) {
		blocks, err := readCorefile("Corefile", text)
		if err != nil {
			return
		}
		for _, b := range blocks {
			if b.opts.Topology == "" && len(b.problems) == 0 {
				t.Fatalf("a block without a topology file and without a problem from %q", text)
			}
		}
	})
}

// SPEC: A1 C1
func TestCorefileReaderReadsLikeTheNode(t *testing.T) {
	blocks, err := readCorefile("/etc/pgplane/Corefile", ".:53 {\n  pgplane \"my topology.yaml\" { # the file\n    gateway 10.0.0.21:5432 10.0.0.22:5432\n    # admin 0.0.0.0:1\n    ttl 0\n    cluster_bind 10.0.0.21:7946\n    cluster_name n1\n    cluster_members n1 n2 n3\n  }\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 {
		t.Fatalf("read %+v", blocks)
	}
	b := blocks[0]
	if b.opts.Topology != "my topology.yaml" || len(b.opts.Gateway.Listen) != 2 || b.opts.Admin.Listen != "" || b.propLine["gateway"] != 3 || b.opts.Path(b.opts.Topology) != "/etc/pgplane/my topology.yaml" {
		t.Fatalf("read %+v", b)
	}
	// Each property is checked where it stands, and the rules that tie
	// properties together with the node's own words.
	want := []string{"/etc/pgplane/Corefile:5: ttl 0: want whole seconds from 1 to 86400", "/etc/pgplane/Corefile:3: gateway needs gateway_tls"}
	for _, w := range want {
		if !slices.ContainsFunc(b.problems, func(p string) bool { return strings.HasPrefix(p, w) }) {
			t.Errorf("want a problem %q, got %q", w, b.problems)
		}
	}
}

// A file a property names is read as the node reads it, and a problem
// points at that property's line.
//
// SPEC: A1
func TestCorefileFilesCheckedLikeTheNode(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("\n"), 0o600)
	corefile := filepath.Join(dir, "Corefile")
	blocks, err := readCorefile(corefile, ".:53 {\n  pgplane t.yaml {\n    admin 10.0.0.21:8530\n    admin_token_file token\n    cluster_bind 10.0.0.21:7946\n    cluster_name n1\n    cluster_members n1\n    cluster_key_file missing.key\n  }\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(blocks[0].problems, "\n")
	for _, w := range []string{corefile + ":4: admin_token_file token is empty", corefile + ":8: cluster_key_file: open " + filepath.Join(dir, "missing.key")} {
		if !strings.Contains(problems, w) {
			t.Errorf("want %q in\n%s", w, problems)
		}
	}
}

// pgplanectl cannot import the plugin (it would bring CoreDNS), so the
// appliance's list of properties is checked against the plugin's README
// Syntax.
func TestPropertiesMatchThePluginSyntax(t *testing.T) {
	b, err := os.ReadFile("../../plugin/pgplane/README.md")
	if err != nil {
		t.Fatal(err)
	}
	syntax := regexp.MustCompile("(?s)pgplane TOPOLOGY_FILE \\{\n(.*?)\n\\}").FindStringSubmatch(string(b))
	if syntax == nil {
		t.Fatal("no Syntax block in the plugin README")
	}
	var documented []string
	for _, line := range strings.Split(syntax[1], "\n") {
		fields := strings.Fields(line)
		documented = append(documented, fields[0])
		for i, f := range fields {
			if f == "|" && i+1 < len(fields) && strings.Contains(fields[i+1], "_") {
				documented = append(documented, fields[i+1])
			}
		}
	}
	slices.Sort(documented)
	known := slices.Sorted(slices.Values(appliance.Properties))
	if !slices.Equal(documented, known) {
		t.Fatalf("the plugin documents %v\nthe appliance knows %v", documented, known)
	}
}

// A pgplane line without exactly one topology file is one problem, said
// once.
func TestCorefileTopologyArgumentSaidOnce(t *testing.T) {
	for _, text := range []string{".:53 {\n pgplane a b\n}\n", ".:53 {\n pgplane\n}\n", ".:53 {\n pgplane \"\"\n}\n"} {
		blocks, err := readCorefile("/etc/pgplane/Corefile", text)
		if err != nil {
			t.Fatal(err)
		}
		want := "/etc/pgplane/Corefile:2: pgplane takes one argument, the topology file"
		if p := blocks[0].problems; len(p) != 1 || p[0] != want {
			t.Errorf("%q: problems %q, want just %q", text, p, want)
		}
	}
}
