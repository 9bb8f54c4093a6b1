package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SPEC: C1 A1
func TestInstallScriptAndSystemdUnit(t *testing.T) {
	root := t.TempDir()
	install := func() string {
		t.Helper()
		cmd := exec.Command("sh", "../../deploy/install.sh", "--root", root, "--bin", filepath.Dir(binary))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := install()
	for _, want := range []string{"gossip key:", "admin token:", "TLS: a CA", "Corefile: "} {
		if !strings.Contains(first, want) {
			t.Fatalf("first install lacks %q:\n%s", want, first)
		}
	}
	secrets := map[string]string{}
	for _, f := range []string{"etc/pgplane/gossip.key", "etc/pgplane/admin.token", "etc/pgplane/tls/server.crt", "etc/pgplane/tls/ca.key"} {
		secrets[f] = read(f)
	}
	if info, _ := os.Stat(filepath.Join(root, "etc/pgplane/gossip.key")); info.Mode().Perm()&0o077 != 0 {
		t.Fatalf("the gossip key must not be readable by others: %v", info.Mode())
	}
	// The operator edits the Corefile; a second run keeps every file.
	edited := read("etc/pgplane/Corefile") + "\n# edited by the operator\n"
	writeFile(t, filepath.Join(root, "etc/pgplane"), "Corefile", edited)
	second := install()
	if strings.Contains(second, "gossip key:") || !strings.Contains(second, "kept: "+filepath.Join(root, "etc/pgplane/gossip.key")) {
		t.Fatalf("a second run must keep the key:\n%s", second)
	}
	for f, was := range secrets {
		if read(f) != was {
			t.Fatalf("a second run changed %s", f)
		}
	}
	if read("etc/pgplane/Corefile") != edited {
		t.Fatal("a second run must not overwrite the operator's Corefile")
	}

	// The installed configuration passes pgplanectl's check.
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/pgplanectl"), "validate", "--corefile", filepath.Join(root, "etc/pgplane/Corefile")).CombinedOutput()
	if err != nil {
		t.Fatalf("the installed Corefile must validate: %v\n%s", err, out)
	}

	// The unit: least privilege, checked by systemd itself. verify needs
	// the binaries where ExecStart says; point it at the installed ones.
	unit := read("etc/systemd/system/pgplane.service")
	for _, want := range []string{"User=pgplane", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"ProtectSystem=strict", "StateDirectory=pgplane", "Restart=on-failure", "NoNewPrivileges=yes"} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}
	check := writeFile(t, t.TempDir(), "pgplane.service", strings.ReplaceAll(unit, "/usr/local/bin/", filepath.Join(root, "usr/local/bin")+"/"))
	verify, err := exec.Command("systemd-analyze", "verify", check).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(verify))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, verify)
	}
}
