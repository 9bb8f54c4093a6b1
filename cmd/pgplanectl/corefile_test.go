package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Corefile reader takes whatever an operator wrote: it must never
// panic, and a block it finds must hold what the text says.
func FuzzCorefileReader(f *testing.F) {
	f.Add(".:53 {\n    pgplane topology.yaml {\n        gateway 10.0.0.21:5432\n    }\n}\n")
	f.Add("pgplane \"a b.yaml\" {\n# comment\n admin 127.0.0.1:8530 # trailing\n}")
	f.Add("pgplane {\n")
	f.Add("pgplane x\npgplane y {\n}\n\"")
	f.Fuzz(func(t *testing.T, text string) {
		blocks, err := findPGPlaneBlocks(lexCorefile(text))
		if err != nil {
			return
		}
		for _, b := range blocks {
			if b.topology == "" || b.props == nil {
				t.Fatalf("a block without a topology file from %q", text)
			}
		}
	})
}

func TestCorefileReaderReadsQuotedAndCommentedText(t *testing.T) {
	blocks, err := findPGPlaneBlocks(lexCorefile(".:53 {\n  pgplane \"my topology.yaml\" { # the file\n    gateway 10.0.0.21:5432 10.0.0.22:5432\n    # admin 0.0.0.0:1\n  }\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].topology != "my topology.yaml" || len(blocks[0].props["gateway"]) != 2 || blocks[0].props["admin"] != nil || blocks[0].propLine["gateway"] != 3 {
		t.Fatalf("read %+v", blocks)
	}
}

// pgplanectl cannot import the plugin (it would bring CoreDNS), so its list
// of the pgplane block's properties is checked against the plugin's README
// Syntax, which the plugin's own tests keep honest.
func TestKnownPropertiesMatchThePluginSyntax(t *testing.T) {
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
	known := slices.Sorted(slices.Values(knownProperties))
	if !slices.Equal(documented, known) {
		t.Fatalf("the plugin documents %v\npgplanectl knows %v", documented, known)
	}
}
