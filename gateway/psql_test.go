package gateway

import (
	"strings"
	"testing"
)

// SPEC: G3 G7 G4
func TestPsqlVerifyFullReachesBackendOverTLS(t *testing.T) {
	f := newFixture(t, nil)
	out, err := f.psql(f.conninfo("reports-db", "application_name=gwtest"),
		"SELECT s.ssl, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE pid = pg_backend_pid()")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if out != "t|gwtest" {
		t.Fatalf("want the backend session over TLS with our application_name, got %q", out)
	}
	out, err = f.psql(f.conninfo("reports-db", ""), "SELECT ssl_is_used()")
	if err == nil || !strings.Contains(out, "ssl_is_used") {
		// ssl_is_used() is in the sslinfo extension; pg_stat_ssl above is the core check.
		t.Logf("sslinfo not installed: %s", out)
	}
	lines := f.logLines()
	if len(lines) == 0 || !strings.Contains(lines[0], `"decision":"proxied"`) || !strings.Contains(lines[0], `"tls":"TLS 1.3"`) ||
		!strings.Contains(lines[0], `"server":"reports-db"`) || !strings.Contains(lines[0], `"client":"127.0.0.1"`) {
		t.Fatalf("want one structured line for the connection (G9), got %v", lines)
	}
}

// SPEC: G7
func TestWrongPasswordGivesBackendError(t *testing.T) {
	f := newFixture(t, nil)
	out, err := f.psql(f.conninfo("reports-db", "password=wrong"), "SELECT 1", "PGPASSWORD=")
	if err == nil || !strings.Contains(out, `password authentication failed for user "app"`) {
		t.Fatalf("want the backend's own error, got %v:\n%s", err, out)
	}
}

// SPEC: G4
func TestTLS11Refused(t *testing.T) {
	f := newFixture(t, nil)
	out, err := f.psql(f.conninfo("reports-db", ""), "SELECT 1", "PGSSLMAXPROTOCOLVERSION=TLSv1.1", "PGSSLMINPROTOCOLVERSION=TLSv1")
	if err == nil {
		t.Fatalf("a TLS 1.1 client must be refused:\n%s", out)
	}
	t.Logf("psql says: %s", out)
}

// SPEC: G4 G3
func TestPlaintextRules(t *testing.T) {
	f := newFixture(t, nil)
	// require_secure_transport on (default): refused with a clear error.
	out, err := f.psql(f.conninfo("reports-db", "sslmode=disable user=app@reports-db"), "SELECT 1")
	if err == nil || !strings.Contains(out, `server "reports-db" requires TLS`) || !strings.Contains(out, "sslmode=require") {
		t.Fatalf("plaintext must be refused with a hint:\n%s", out)
	}
	// require_secure_transport off: accepted, routed by user@NAME, the user
	// reaching the backend without @NAME.
	out, err = f.psql(f.conninfo("plain-db", "sslmode=disable user=app@plain-db"), "SELECT current_user")
	if err != nil || out != "app" {
		t.Fatalf("plaintext with require_secure_transport off: %v\n%s", err, out)
	}
}

// SPEC: G3
func TestNoServerNameIsAClearError(t *testing.T) {
	f := newFixture(t, nil)
	out, err := f.psql("host=127.0.0.1 port="+itoa(f.port)+" user=app dbname=appdb sslmode=require", "SELECT 1")
	if err == nil || !strings.Contains(out, "cannot tell which server") || !strings.Contains(out, "user=USER@NAME") {
		t.Fatalf("want the routing hint:\n%s", out)
	}
	out, err = f.psql("host=127.0.0.1 port="+itoa(f.port)+" user=app@nosuch dbname=appdb sslmode=require", "SELECT 1")
	if err == nil || !strings.Contains(out, `server "nosuch" does not exist`) {
		t.Fatalf("want unknown server:\n%s", out)
	}
	// user@NAME routes over TLS without a usable server name.
	out, err = f.psql("host=127.0.0.1 port="+itoa(f.port)+" user=app@reports-db dbname=appdb sslmode=require", "SELECT current_user")
	if err != nil || out != "app" {
		t.Fatalf("user@NAME over TLS: %v\n%s", err, out)
	}
}

// SPEC: G5 G3
func TestFirewallRefusalIsClearEvenAfterPlaintextRetry(t *testing.T) {
	f := newFixture(t, nil)
	// sslmode=prefer (libpq's default): after the refusal over TLS libpq
	// retries in plaintext. The first error says what is wrong; the second
	// is about its own connection (no TLS server name) and says so.
	out, err := f.psql(f.conninfo("locked-db", "sslmode=prefer"), "SELECT 1")
	if err == nil {
		t.Fatalf("locked-db must refuse 127.0.0.1:\n%s", out)
	}
	want := `no firewall rule of server "locked-db" admits client address 127.0.0.1`
	if strings.Count(out, want) != 1 || !strings.Contains(out, "pgplanectl firewall-rule create --server locked-db") ||
		!strings.Contains(out, "not encrypted, so it carries no TLS server name") || strings.Index(out, want) > strings.Index(out, "not encrypted") {
		t.Fatalf("want the firewall error first, then the plaintext attempt's own error:\n%s", out)
	}
	// A refusal over TLS is never replayed into another connection from the
	// same address: a plaintext connection meant for another server gets
	// its own error, which names no other server.
	out, err = f.psql("host=127.0.0.1 port="+itoa(f.port)+" user=app dbname=appdb sslmode=disable", "SELECT 1")
	if err == nil || strings.Contains(out, "locked-db") || !strings.Contains(out, "cannot tell which server") {
		t.Fatalf("want the plaintext connection's own error:\n%s", out)
	}
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0)) + fmtInt(i) }
