package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
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
