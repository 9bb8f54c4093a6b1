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
	p := newRoleProber(&Monitor{User: pgtest.AuthRole, Database: "postgres", Passfile: passfile}, time.Second)
	defer p.close()
	roleOf := func(addr string) Role {
		t.Helper()
		r, err := p.role(addr, "", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if roleOf(primary.Addr) != RolePrimary || roleOf(standby.Addr) != RoleStandby {
		t.Fatal("a primary is primary and a streaming standby is a standby")
	}
	// The second probe reuses the kept connection: one login per backend.
	if n, _ := primary.Psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgplane monitor'"); n != "1" {
		t.Fatalf("want one kept monitoring connection, have %s", n)
	}
	if err := p.promote(standby.Addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for roleOf(standby.Addr) != RolePrimary {
		if time.Now().After(deadline) {
			t.Fatal("the promoted standby never became primary")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A crash breaks the kept connection: the probe says so, and the next
	// one after a restart logs in again.
	primary.Crash()
	if _, err := p.role(primary.Addr, "", time.Second); err == nil {
		t.Fatal("a crashed backend has no role")
	}
	if err := primary.Restart(); err != nil {
		t.Fatal(err)
	}
	if roleOf(primary.Addr) != RolePrimary {
		t.Fatal("after a restart the probe logs in again")
	}
	// A wrong password is an error that names the role and the file's line.
	bad := filepath.Join(dir, "bad.pgpass")
	os.WriteFile(bad, []byte("*:*:*:"+pgtest.AuthRole+":wrong\n"), 0o600)
	q := newRoleProber(&Monitor{User: pgtest.AuthRole, Database: "postgres", Passfile: bad}, time.Second)
	defer q.close()
	if _, err := q.role(primary.Addr, "", time.Second); err == nil || !strings.Contains(err.Error(), "monitoring role "+pgtest.AuthRole) || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("want a clear login error, got %v", err)
	}
}
