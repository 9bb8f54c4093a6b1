package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/syncbuf"
)

// mountNamespace starts a process that holds a new mount namespace with a
// tmpfs of the given size mounted at dir, and returns its PID; the
// namespace and its tmpfs live until the test ends. Nothing is mounted
// outside it.
func mountNamespace(t *testing.T, dir, size string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	holder := exec.Command("unshare", "-m", "sh", "-c", fmt.Sprintf("mount --make-rprivate / && mount -t tmpfs -o size=%s tmpfs %s && echo mounted && exec sleep 3600", size, dir))
	out := &syncbuf.Buffer{}
	holder.Stdout, holder.Stderr = out, out
	holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	waitFor(t, "the tmpfs to be mounted", 5*time.Second, func() bool { return strings.Contains(out.String(), "mounted") })
	return holder.Process.Pid
}

// inMounts runs a command in the mount namespace of pid.
func inMounts(pid int, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-m", "--"}, args...)...).CombinedOutput()
	return string(out), err
}

// A node whose state directory is a small tmpfs. When the disk fills, a
// change is refused with the reason (503) before Raft sees it, and nothing
// is acknowledged; DNS and reads go on, and the node neither crashes nor
// needs a restart: once space is freed, changes go through again and
// survive kill -9. When the directory is removed under the running node,
// changes are refused with the reason (503) while DNS and reads go on from
// the state applied. (A read-only remount cannot be made while the log's
// file is open for writing, so it is not among the faults.)
//
// SPEC: C5 A1
func TestStateDiskFaults(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	ns := mountNamespace(t, mnt, "24m")
	writeFile(t, dir, "topology.yaml", partitionTopology)
	dnsPort, adminPort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	writeFile(t, dir, "Corefile", fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    pgplane topology.yaml {
        admin 127.0.0.1:%d
        state %s
    }
}
`, dnsPort, adminPort, filepath.Join(mnt, "state")))
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	var node *exec.Cmd
	log := &syncbuf.Buffer{}
	start := func() {
		t.Helper()
		node = exec.Command("nsenter", "-t", strconv.Itoa(ns), "-m", "--", binary, "-conf", filepath.Join(dir, "Corefile"))
		node.Dir = dir
		node.Stdout, node.Stderr = log, log
		node.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := node.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the node to take reads", 15*time.Second, func() bool {
			_, code := pgplanectlAt(t, endpoint, "firewall-rule", "list", "--server", "sales-db")
			return code == 0
		})
	}
	kill := func() {
		node.Process.Kill()
		node.Wait()
	}
	t.Cleanup(func() {
		kill()
		if t.Failed() {
			t.Logf("node log:\n%s", log.String())
		}
	})
	create := func(rule string) (string, int) {
		return pgplanectlAt(t, endpoint, "firewall-rule", "create", "--server", "sales-db", "--name", rule, "--start-ip-address", "203.0.113.1", "--end-ip-address", "203.0.113.1")
	}
	has := func(rule string) bool {
		_, code := pgplanectlAt(t, endpoint, "firewall-rule", "show", "--server", "sales-db", "--name", rule)
		return code == 0
	}
	answers := func() bool {
		r, err := digTry("", "@127.0.0.1", "-p", strconv.Itoa(dnsPort), "sales-db.postgres.database.azure.com", "A")
		return err == nil && r.status == "NOERROR" && len(r.answer) > 0
	}

	start()
	waitFor(t, "a first change", 10*time.Second, func() bool { _, code := create("before"); return code == 0 })

	// The disk fills up.
	inMounts(ns, "dd", "if=/dev/zero", "of="+filepath.Join(mnt, "fill"), "bs=1M")
	if out, _ := inMounts(ns, "df", "--output=avail", mnt); !strings.Contains(out, " 0\n") {
		t.Fatalf("the tmpfs must be full:\n%s", out)
	}
	out, code := create("while-full")
	if code == 0 || !strings.Contains(out, "changes are refused until space is freed") || !strings.Contains(out, "503") {
		t.Fatalf("a change on a full disk must be refused with the reason: %d %s", code, out)
	}
	time.Sleep(time.Second)
	if !answers() || !has("before") || has("while-full") {
		t.Fatal("with the disk full, DNS and reads go on and the refused change is not served")
	}
	inMounts(ns, "rm", filepath.Join(mnt, "fill"))
	if out, code := create("after-freeing"); code != 0 {
		t.Fatalf("once space is freed, changes go through again without a restart: %s", out)
	}
	kill()
	start()
	if !has("before") || !has("after-freeing") {
		t.Fatalf("acknowledged changes must survive kill -9:\n%s", log.String())
	}

	// The state directory goes away under the running node.
	if out, err := inMounts(ns, "rm", "-rf", filepath.Join(mnt, "state", "raft")); err != nil {
		t.Fatalf("removing the state directory: %v %s", err, out)
	}
	out, code = create("after-removal")
	if code == 0 || !strings.Contains(out, "removed or replaced while the node ran") || !strings.Contains(out, "503") {
		t.Fatalf("a change after the state directory was removed must be refused with the reason: %d %s", code, out)
	}
	if !answers() || !has("after-freeing") {
		t.Fatal("DNS and reads must go on from the state applied")
	}
	if has("after-removal") {
		t.Fatal("the refused change must not be served")
	}
	if out, _ := pgplanectlAt(t, endpoint, "health"); !strings.Contains(out, "CHANGES REFUSED: the state directory's Raft log") {
		t.Fatalf("pgplanectl health must say why changes are refused:\n%s", out)
	}
}

// A node upgraded from the format before Raft finds STATE/state.json,
// imports its run-time changes once, says so in its log, serves them, and
// keeps the file as state.json.imported.
//
// SPEC: C5
func TestPreviousStateFormatImported(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "topology.yaml", partitionTopology)
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	writeFile(t, filepath.Join(dir, "state"), "state.json", `{"synced_at":"2026-11-01T00:00:00Z","clock":{"wall":1,"node":"local"},"entries":[
{"key":"server/sales-db/firewallRule/office","value":{"startIpAddress":"203.0.113.1","endIpAddress":"203.0.113.9"},"version":{"wall":1,"node":"local"}}]}`)
	dnsPort, adminPort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	n := startNode(t, dir, fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    pgplane topology.yaml {
        admin 127.0.0.1:%d
        state state
    }
}
`, dnsPort, adminPort), fmt.Sprintf("127.0.0.1:%d", dnsPort), "")
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	waitFor(t, "the previous state to be imported", 10*time.Second, func() bool {
		out, code := pgplanectlAt(t, endpoint, "firewall-rule", "show", "--server", "sales-db", "--name", "office")
		return code == 0 && strings.Contains(out, "203.0.113.9")
	})
	waitFor(t, "the import to be logged and the file set aside", 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "state", "state.json.imported"))
		return err == nil && strings.Contains(n.log.String(), "imported 1 run-time changes")
	})
	if _, err := os.Stat(filepath.Join(dir, "state", "state.json")); !os.IsNotExist(err) {
		t.Fatal("state.json must be renamed after the import")
	}
}
