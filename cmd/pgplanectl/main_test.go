package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// SPEC: A2 T6 T8
func TestValidate(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "--topology", "../../corefile/dev/topology.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("the dev topology must be valid: exit %d\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "valid: 1 regions, 3 vnets, 1 private DNS zones, 2 servers") {
		t.Fatalf("summary: %s", out.String())
	}

	data, _ := os.ReadFile("../../corefile/dev/topology.yaml")
	bad := strings.Replace(string(data), "127.0.1.0/28", "127.0.1.0/29", 1)
	bad = strings.Replace(bad, "name: hub-vnet", "name: hub-vnet\n    subnets: [{name: GatewaySubnet, cidr: 127.0.2.0/28}]", 1)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(bad), 0o644)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "--topology", path}, &out, &errOut); code != 1 {
		t.Fatalf("want exit 1 for a broken topology, got %d", code)
	}
	for _, want := range []string{": T6: subnet \"db\" in vnet \"app-vnet\"", ": T8: subnet \"GatewaySubnet\" in vnet \"hub-vnet\"", "2 errors"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("missing %q in:\n%s", want, errOut.String())
		}
	}
	if code := run([]string{"validate"}, &out, &errOut); code != 2 {
		t.Fatalf("a missing flag is a usage error (2), got %d", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("an unknown command is a usage error (2), got %d", code)
	}
}

// SPEC: C1
func TestClusterKey(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster-key"}, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out.String()))
	if err != nil || len(key) != 32 {
		t.Fatalf("want base64 of 32 bytes, got %q", out.String())
	}
}

// SPEC: A1
func TestCompletionScriptIsValidBash(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"completion", "bash"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, want := range []string{"firewall-rule create", "--start-ip-address", "private-dns link vnet create"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the script lacks %q", want)
		}
	}
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = &out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, b)
	}
}

// SPEC: A1
func TestResourceCommandsNeedTheirFlags(t *testing.T) {
	var out, errs bytes.Buffer
	code := run([]string{"firewall-rule", "create", "--server", "s1", "--name", "office", "--start-ip-address", "203.0.113.1"}, &out, &errs)
	if code != 2 || !strings.Contains(errs.String(), "--end-ip-address is required") {
		t.Fatalf("want exit 2 naming the missing flag, got %d: %s", code, errs.String())
	}
}

// SPEC: C1 A1 A2 T6
func TestValidateCorefile(t *testing.T) {
	dir := t.TempDir()
	topo, _ := os.ReadFile("../../corefile/dev/topology.yaml")
	os.WriteFile(filepath.Join(dir, "topology.yaml"), topo, 0o644)
	var out, errs bytes.Buffer
	if code := run([]string{"certs", "create", "--dir", filepath.Join(dir, "tls"), "--topology", filepath.Join(dir, "topology.yaml")}, &out, &errs); code != 0 {
		t.Fatalf("certs create: %d %s", code, errs.String())
	}
	good := `.:53 {
    pgplane topology.yaml {
        gateway 192.0.2.10:5432
        gateway_tls tls/server.crt tls/server.key
        gateway_auth_user pgplane_auth auth.pgpass
        cluster_name n1
        cluster_members n1 n2 n3
        cluster_bind 192.0.2.1:7946
        cluster_key_file gossip.key
        admin 127.0.0.1:8530
        state /var/lib/pgplane
    }
}
`
	os.WriteFile(filepath.Join(dir, "gossip.key"), []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 0o600)
	os.WriteFile(filepath.Join(dir, "auth.pgpass"), []byte("*:*:*:pgplane_auth:secret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "Corefile"), []byte(good), 0o644)
	out.Reset()
	errs.Reset()
	if code := run([]string{"validate", "--corefile", filepath.Join(dir, "Corefile")}, &out, &errs); code != 0 {
		t.Fatalf("a good Corefile: exit %d\n%s%s", code, out.String(), errs.String())
	}

	// Every problem at once, each with its line.
	bad := strings.NewReplacer("cluster_key_file gossip.key", "cluster_key_file short.key",
		"admin 127.0.0.1:8530", "admin 192.0.2.1:8530", "state /var/lib/pgplane", "colour blue",
		"auth.pgpass", "missing.pgpass").Replace(good)
	os.WriteFile(filepath.Join(dir, "short.key"), []byte(base64.StdEncoding.EncodeToString(make([]byte, 7))), 0o600)
	os.WriteFile(filepath.Join(dir, "Corefile"), []byte(bad), 0o644)
	// A zone the certificate does not cover, and a /29.
	os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(strings.Replace(strings.Replace(string(topo),
		"contoso.private.postgres", "fabrikam.private.postgres", -1), "127.0.1.0/28", "127.0.1.0/29", 1)), 0o644)
	out.Reset()
	errs.Reset()
	code := run([]string{"validate", "--corefile", filepath.Join(dir, "Corefile")}, &out, &errs)
	for _, want := range []string{"Corefile:11: unknown property \"colour\"", "Corefile:9: cluster_key_file short.key: the key is 7 bytes",
		"Corefile:10: the admin API on 192.0.2.1:8530 needs admin_token_file", "T6: subnet \"db\"", "Corefile:5: gateway_auth_user: the password file"} {
		if !strings.Contains(errs.String(), want) {
			t.Errorf("want %q in:\n%s", want, errs.String())
		}
	}
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	// Fix the topology but keep the new zone: the certificate must cover it.
	os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(strings.Replace(string(topo), "contoso.private.postgres", "fabrikam.private.postgres", -1)), 0o644)
	os.WriteFile(filepath.Join(dir, "Corefile"), []byte(good), 0o644)
	errs.Reset()
	if code := run([]string{"validate", "--corefile", filepath.Join(dir, "Corefile")}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "does not cover *.fabrikam.private.postgres.database.azure.com") {
		t.Fatalf("a certificate missing a zone: exit %d\n%s", code, errs.String())
	}
}

func TestHelpAndGlobalFlags(t *testing.T) {
	for _, args := range [][]string{{"cluster-key", "--help"}, {"cluster", "show", "-h"}, {"firewall-rule", "create", "--help"}, {"validate", "--help"}, {"health", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "pgplanectl "+strings.Join(args[:len(args)-1], " ")+": ") {
			t.Fatalf("%v: want its own help on stdout and exit 0, got %d:\n%s%s", args, code, out.String(), errb.String())
		}
		if strings.Contains(out.String(), "\n  -") && !strings.Contains(out.String(), "\n  --") {
			t.Fatalf("%v: flags are printed with two dashes:\n%s", args, out.String())
		}
	}
	var out, errb bytes.Buffer
	run([]string{"firewall-rule", "create", "--help"}, &out, &errb)
	if !strings.Contains(out.String(), "  --start-ip-address") || strings.Contains(out.String(), "\n  -start-ip-address") {
		t.Fatalf("want --start-ip-address in the help:\n%s", out.String())
	}
	// A global flag before the command is taken as if after it: the call
	// goes to that endpoint (nothing listens there: the error names it).
	out.Reset()
	errb.Reset()
	code := run([]string{"--endpoint", "http://127.0.0.1:1", "--output", "json", "firewall-rule", "list", "--server", "s1"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "127.0.0.1:1") || strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("global flags before the command must work: %d %s", code, errb.String())
	}
	if got := liftGlobalFlags([]string{"--token=x", "server", "list", "--output", "json"}); strings.Join(got, " ") != "server list --token=x --output json" {
		t.Fatalf("liftGlobalFlags: %v", got)
	}
}

func TestCertsCreateListsEachNameOnce(t *testing.T) {
	var out, errb bytes.Buffer
	dir := t.TempDir()
	if code := run([]string{"certs", "create", "--dir", dir, "--names", "*.postgres.database.azure.com,db.example.test"}, &out, &errb); code != 0 {
		t.Fatalf("%d %s", code, errb.String())
	}
	pem, err := os.ReadFile(filepath.Join(dir, "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pemDecode(pem)
	cert, err := x509.ParseCertificate(block)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(cert.DNSNames, " "), "*.postgres.database.azure.com"); n != 1 || !slices.Contains(cert.DNSNames, "db.example.test") {
		t.Fatalf("each name once: %v", cert.DNSNames)
	}
}

func pemDecode(b []byte) ([]byte, []byte) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, rest
	}
	return block.Bytes, rest
}

func TestOutputFormatsAndQuery(t *testing.T) {
	answer := []byte(`[{"name":"s1","region":"eastus2","firewallRules":[{"name":"a"}]},{"name":"s2","region":"westus"}]`)
	for _, tc := range []struct{ output, query, want string }{
		{"tsv", "", "s1\teastus2\ns2\twestus\n"}, // keys sorted: name, region; lists left out
		{"tsv", "[].name", "s1\ns2\n"},
		{"json", "[?region=='westus'].name | [0]", "\"s2\"\n"},
		{"yaml", "[0].{server: name, location: region}", "location: eastus2\nserver: s1\n"},
		{"table", "[].{name: name, region: region}", "NAME  REGION\ns1    eastus2\ns2    westus\n"},
		{"none", "", ""},
	} {
		c := common{output: tc.output, query: tc.query}
		var out bytes.Buffer
		if err := c.render(&out, answer, nil); err != nil || out.String() != tc.want {
			t.Errorf("--output %s --query %q: %v\n%q\nwant %q", tc.output, tc.query, err, out.String(), tc.want)
		}
	}
	c := common{output: "json", query: "[.name"}
	if err := c.render(io.Discard, answer, nil); err == nil || !strings.Contains(err.Error(), "--query") {
		t.Fatalf("a bad query is an error that names it: %v", err)
	}
	if err := (&common{output: "xml"}).checkOutput(); err == nil || !strings.Contains(err.Error(), "table, json, yaml, tsv, none") {
		t.Fatalf("an unknown output is refused with the choices: %v", err)
	}
}
