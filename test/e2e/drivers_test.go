package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"
)

// driverRun runs one driver's probe with a time limit and returns what it
// printed.
func driverRun(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// SPEC: G7 G3
func TestEveryCommonDriverWithItsDefaults(t *testing.T) {
	// The appliance's gateway in front of a PostgreSQL with a certificate
	// of its own (gateway_auth terminate, the default): each driver
	// connects with its own defaults and only what it must be told.
	_, _, gwPort, ca := gatewayNode(t)
	port := fmt.Sprint(gwPort)
	drivers, _ := filepath.Abs("drivers")
	routed := pgtest.User + "@reports-db" // drivers that look the host name up route by user@NAME (G3)

	t.Run("libpq", func(t *testing.T) {
		for _, extra := range []string{"", "channel_binding=require"} {
			out, err := psql(t, fmt.Sprintf("host=reports-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%s user=app dbname=appdb sslrootcert=%s %s", port, ca, extra), "SELECT current_user")
			if err != nil || out != "app" {
				t.Fatalf("psql %q: %v\n%s", extra, err, out)
			}
		}
	})
	t.Run("psycopg", func(t *testing.T) {
		python := requireCommand(t, "/usr/bin/python3", "python3-psycopg")
		out, err := driverRun(t, python, filepath.Join(drivers, "probe_psycopg.py"),
			fmt.Sprintf("host=127.0.0.1 port=%s user=%s password=%s dbname=appdb", port, routed, pgtest.Password))
		if err != nil || out != "app" {
			t.Fatalf("psycopg: %v\n%s", err, out)
		}
	})
	t.Run("asyncpg", func(t *testing.T) {
		python := requireCommand(t, "/usr/bin/python3", "python3-asyncpg")
		out, err := driverRun(t, python, filepath.Join(drivers, "probe_asyncpg.py"), "127.0.0.1", port, routed, pgtest.Password, pgtest.Database)
		if err != nil || out != "app" {
			t.Fatalf("asyncpg: %v\n%s", err, out)
		}
	})
	t.Run("pgjdbc", func(t *testing.T) {
		java := requireCommand(t, "java", "default-jdk-headless")
		jar := "/usr/share/java/postgresql.jar"
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("pgjdbc is not installed (%v): apt-get install libpostgresql-jdbc-java", err)
		}
		out, err := driverRun(t, java, "-cp", jar, filepath.Join(drivers, "Probe.java"),
			fmt.Sprintf("jdbc:postgresql://127.0.0.1:%s/appdb?user=%s&password=%s", port, routed, pgtest.Password))
		if err != nil || !strings.HasSuffix(out, "app") {
			t.Fatalf("pgjdbc: %v\n%s", err, out)
		}
	})
	t.Run("node-postgres", func(t *testing.T) {
		node := requireCommand(t, "node", "nodejs")
		npm := requireCommand(t, "npm", "npm")
		modules := t.TempDir()
		copyFile(t, filepath.Join(drivers, "probe_pg.js"), filepath.Join(modules, "probe_pg.js"))
		if out, err := driverRun(t, npm, "install", "--prefix", modules, "--no-audit", "--no-fund", "--silent", "pg@8"); err != nil {
			t.Fatalf("npm install pg: %v\n%s", err, out)
		}
		for _, cb := range []string{"", "cb"} {
			out, err := driverRun(t, node, filepath.Join(modules, "probe_pg.js"), "127.0.0.1", port, pgtest.User, pgtest.Password, pgtest.Database, ca, cb)
			if err != nil || out != "app" {
				t.Fatalf("node-postgres (enableChannelBinding %v): %v\n%s", cb == "cb", err, out)
			}
		}
	})
}

// requireCommand returns the path of a command the test needs, failing
// with the Debian package to install when it is missing.
func requireCommand(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: apt-get install %s (make deps does)", name, pkg)
	}
	return path
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
