package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"
)

// SPEC: C6
func TestRoleProbesOfARealPrimaryAndStandby(t *testing.T) {
	dir := t.TempDir()
	primary, err := pgtest.Start("", pgtest.Options{OwnCertificate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(primary.Destroy)
	standby, err := primary.StartStandby("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Destroy)
	passfile, err := pgtest.WriteAuthPassfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := newRoleProber(&Monitor{User: pgtest.AuthRole, Database: "postgres", Passfile: passfile}, 100*time.Millisecond, time.Second)
	defer p.close()
	// waitRole waits until the monitor of addr reports want.
	waitRole := func(addr string, want Role) {
		t.Helper()
		var r Role
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if r, err = p.role(addr, ""); r == want {
				return
			}
		}
		t.Fatalf("%s: want role %q, have %q (%v)", addr, want, r, err)
	}
	waitRole(primary.Addr, RolePrimary)
	waitRole(standby.Addr, RoleStandby)
	// Later probes reuse the kept connection: one login per backend.
	time.Sleep(300 * time.Millisecond)
	if n, _ := primary.Psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgplane monitor'"); n != "1" {
		t.Fatalf("want one kept monitoring connection, have %s", n)
	}
	if err := p.promote(standby.Addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitRole(standby.Addr, RolePrimary)
	if err := p.promote(standby.Addr, 5*time.Second); err != nil {
		t.Fatalf("promoting a primary again is not an error: %v", err)
	}
	// A crash breaks the kept connection: the monitor says so, and logs in
	// again after a restart.
	primary.Crash()
	waitRole(primary.Addr, RoleUnknown)
	if err := primary.Restart(); err != nil {
		t.Fatal(err)
	}
	waitRole(primary.Addr, RolePrimary)
	// A wrong password is an error that names the role and the file's line.
	bad := filepath.Join(dir, "bad.pgpass")
	os.WriteFile(bad, []byte("*:*:*:"+pgtest.AuthRole+":wrong\n"), 0o600)
	q := newRoleProber(&Monitor{User: pgtest.AuthRole, Database: "postgres", Passfile: bad}, 100*time.Millisecond, time.Second)
	defer q.close()
	var err2 error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && err2 == nil; time.Sleep(50 * time.Millisecond) {
		_, err2 = q.role(primary.Addr, "")
	}
	if err2 == nil || !strings.Contains(err2.Error(), "monitoring role "+pgtest.AuthRole) || !strings.Contains(err2.Error(), "password authentication failed") {
		t.Fatalf("want a clear login error, got %v", err2)
	}
	// Failed logins are spaced: one attempt per second, not one per probe.
	time.Sleep(1500 * time.Millisecond)
	if n := strings.Count(primary.Log(), "password authentication failed for user \""+pgtest.AuthRole+"\""); n < 1 || n > 3 {
		t.Fatalf("want one to three failed logins in 1.5 s, the server logged %d", n)
	}
}
