package e2e

import (
	"fmt"
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
	for _, want := range []string{"gossip key:", "admin token:", "gateway auth role:", "TLS: a CA", "Corefile: "} {
		if !strings.Contains(first, want) {
			t.Fatalf("first install lacks %q:\n%s", want, first)
		}
	}
	secrets := map[string]string{}
	for _, f := range []string{"etc/pgplane/gossip.key", "etc/pgplane/admin.token", "etc/pgplane/auth.pgpass", "etc/pgplane/tls/server.crt", "etc/pgplane/tls/ca.key"} {
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

// The install as it runs on a VM, as root on /: the user is made, the
// files are owned so that the service's user reads what it needs and no
// more, and the node runs as the unit runs it: as that user with
// CAP_NET_BIND_SERVICE alone, answering on port 53, listening on 5432 and
// writing its state. The test runs it in a mount namespace over a copy of /etc and empty
// /var/lib and /usr/local/bin, so the machine's own are not touched.
//
// SPEC: C1 A1
func TestInstallScriptOnTheRealRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	tmp := t.TempDir()
	if out, err := exec.Command("cp", "-a", "/etc", filepath.Join(tmp, "etc")).CombinedOutput(); err != nil {
		t.Fatalf("copying /etc: %v %s", err, out)
	}
	os.MkdirAll(filepath.Join(tmp, "state"), 0o755)
	os.MkdirAll(filepath.Join(tmp, "bin"), 0o755)
	script := fmt.Sprintf(`set -e
mount --make-rprivate /
mount --bind %[1]s/etc /etc
mount --bind %[1]s/state /var/lib
mount --bind %[1]s/bin /usr/local/bin
sh deploy/install.sh --bin %[2]s
sh deploy/install.sh --bin %[2]s >/dev/null
stat -c '%%n %%U:%%G %%a' /etc/pgplane /etc/pgplane/gossip.key /etc/pgplane/admin.token /etc/pgplane/tls /etc/pgplane/tls/server.key /etc/pgplane/tls/ca.key /var/lib/pgplane
getent passwd pgplane
su -s /bin/sh pgplane -c '/usr/local/bin/pgplanectl validate --corefile /etc/pgplane/Corefile'
if su -s /bin/sh pgplane -c 'cat /etc/pgplane/tls/ca.key' >/dev/null 2>&1; then echo "the CA key is readable by pgplane"; exit 1; fi

# Run the node as the unit does: user pgplane, CAP_NET_BIND_SERVICE only,
# $STATE_DIRECTORY, in /etc/pgplane; a lone node on ports 53 and 5432 of
# this namespace's own loopback.
ip link set lo up
ip addr add 10.0.0.21/32 dev lo
sed -i -e 's/bind 10.0.0.11/bind 127.0.0.1/' -e '/cluster_/d' /etc/pgplane/Corefile
cd /etc/pgplane
STATE_DIRECTORY=/var/lib/pgplane setpriv --reuid pgplane --regid pgplane --init-groups \
    --inh-caps -all,+net_bind_service --ambient-caps -all,+net_bind_service --bounding-set -all,+net_bind_service \
    /usr/local/bin/pgplane -conf /etc/pgplane/Corefile > /tmp/node.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for i in $(seq 50); do dig @127.0.0.1 -p 53 +short postgres.database.azure.com SOA 2>/dev/null | grep -q hostmaster && break; sleep 0.1; done
echo "dns: $(dig @127.0.0.1 -p 53 +short eastus2.control.postgres.database.azure.com A)"
for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:8181/ready && break; sleep 0.1; done
echo "ready: $(curl -s 127.0.0.1:8181/ready)"
bash -c 'exec 3<>/dev/tcp/10.0.0.21/5432' && echo "gateway: listening on 10.0.0.21:5432"
export PGPLANE_TOKEN=$(cat /etc/pgplane/admin.token)
/usr/local/bin/pgplanectl vnet create --name lab --location eastus2 --address-prefixes 10.9.0.0/16 >/dev/null && echo "change: accepted"
stat -c 'state %%n %%U:%%G' /var/lib/pgplane/raft/applied.json /var/lib/pgplane/raft/raft.db
grep -o CapEff:.* /proc/$pid/status
ps -o user= -p $pid
`, tmp, filepath.Dir(binary))
	cmd := exec.Command("unshare", "-m", "-n", "sh", "-c", script)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install on /: %v\n%s", err, out)
	}
	for _, want := range []string{"user pgplane created", "/etc/pgplane root:pgplane 750", "/etc/pgplane/gossip.key root:pgplane 640",
		"/etc/pgplane/tls root:pgplane 750", "/etc/pgplane/tls/server.key root:pgplane 640", "/etc/pgplane/tls/ca.key root:pgplane 600",
		"/var/lib/pgplane pgplane:pgplane 750", "pgplane:x:", ":/var/lib/pgplane:/usr/sbin/nologin", "/etc/pgplane/Corefile: valid",
		"dns: 10.0.0.21", "ready: OK", "gateway: listening on 10.0.0.21:5432", "change: accepted",
		"state /var/lib/pgplane/raft/applied.json pgplane:pgplane", "state /var/lib/pgplane/raft/raft.db pgplane:pgplane", "CapEff:\t0000000000000400", "\npgplane\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	for _, p := range []string{"/etc/pgplane", "/var/lib/pgplane"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("the test must not touch the machine's %s", p)
		}
	}
}
