package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/topology"

	"github.com/jackc/pgx/v5/pgconn"
)

// SPEC: G7 G4
func TestTerminateWithLibpqDefaultsAgainstBackendWithOwnCertificate(t *testing.T) {
	f := newFixture(t, nil)
	// libpq's default channel_binding=prefer, and require: the gateway
	// offers SCRAM-SHA-256-PLUS over its own certificate, so require
	// succeeds only if the binding really is checked.
	for _, cb := range []string{"", "channel_binding=require", "channel_binding=disable"} {
		out, err := f.psql(f.conninfo("reports-db", cb),
			"SELECT current_user, s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()")
		if err != nil || out != "app|t" {
			t.Fatalf("%q: want the backend session as app over TLS, got %v:\n%s", cb, err, out)
		}
	}
	// The backend does not present the gateway's certificate.
	own, err := f.pg.CertificatePEM()
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := os.ReadFile(filepath.Join(filepath.Dir(f.caFile), DevCertFile))
	if string(own) == string(gw) {
		t.Fatal("the fixture's backend must have a certificate of its own")
	}
}

// SPEC: G7
func TestPassthroughBindsOnlyWithTheGatewaysCertificate(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Auth = AuthPassthrough })
	out, err := f.psql(f.conninfo("gwcert-db", "channel_binding=require"), "SELECT current_user")
	if err != nil || out != "app" {
		t.Fatalf("a backend with the gateway's certificate: channel binding end to end: %v\n%s", err, out)
	}
	out, err = f.psql(f.conninfo("reports-db", ""), "SELECT 1")
	if err == nil || !strings.Contains(out, "channel binding cannot cross the gateway") || !strings.Contains(out, "gateway_auth terminate") {
		t.Fatalf("passthrough to a backend with its own certificate: want the clear refusal, got %v:\n%s", err, out)
	}
	if out, err := f.psql(f.conninfo("reports-db", "channel_binding=disable"), "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("channel_binding=disable: %v\n%s", err, out)
	}
}

// connectAs connects with pgx as user with password to reports-db.
func (f *fixture) connectAs(user, password, src string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := f.pgxConfig("reports-db", user, password, src)
	if err != nil {
		return err
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		c.Close(ctx)
	}
	return err
}

func pgCode(err error) (string, string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message
	}
	return "", fmt.Sprint(err)
}

// serverFirst runs the start of a SCRAM exchange with the gateway as user
// and returns the server-first-message.
func (f *fixture) serverFirst(t *testing.T, user string) string {
	t.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := make([]byte, 8)
	binary.BigEndian.PutUint32(req, 8)
	binary.BigEndian.PutUint32(req[4:], pgwire.SSLRequestCode)
	conn.Write(req)
	var s [1]byte
	if _, err := conn.Read(s[:]); err != nil || s[0] != 'S' {
		t.Fatalf("SSLRequest: %q %v", s[0], err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: "reports-db.postgres.database.azure.com", InsecureSkipVerify: true}) // #nosec G402 -- a test reading the salt
	r := bufio.NewReader(tc)
	tc.Write(pgwire.StartupMessage("user", user, "database", pgtest.Database))
	typ, payload, err := pgwire.ReadMessage(r, 1<<16)
	if err != nil || typ != 'R' || binary.BigEndian.Uint32(payload) != pgwire.AuthSASL {
		t.Fatalf("want AuthenticationSASL, got %q %v", typ, err)
	}
	first := []byte("n,,n=,r=fixednonce")
	p := pgwire.AppendCString(nil, pgwire.ScramSHA256)
	p = binary.BigEndian.AppendUint32(p, uint32(len(first)))
	tc.Write(pgwire.AppendMessage(nil, 'p', append(p, first...)))
	typ, payload, err = pgwire.ReadMessage(r, 1<<16)
	if err != nil || typ != 'R' || binary.BigEndian.Uint32(payload) != pgwire.AuthSASLContinue {
		t.Fatalf("want AuthenticationSASLContinue, got %q %v", typ, err)
	}
	return string(payload[4:])
}

// saltOf returns the s= and i= attributes of a server-first-message.
func saltOf(serverFirst string) string {
	parts := strings.Split(serverFirst, ",")
	return parts[1] + "," + parts[2]
}

// SPEC: G7
func TestWrongPasswordAndUnknownUserLookAlike(t *testing.T) {
	f := newFixture(t, nil)
	wrongCode, wrongMsg := pgCode(f.connectAs(pgtest.User, "wrong", "127.0.0.1"))
	ghostCode, ghostMsg := pgCode(f.connectAs("ghost", "wrong", "127.0.0.1"))
	if wrongCode != "28P01" || wrongMsg != `password authentication failed for user "app"` {
		t.Fatalf("a wrong password: want PostgreSQL's 28P01, got %s %q", wrongCode, wrongMsg)
	}
	if ghostCode != wrongCode || ghostMsg != strings.Replace(wrongMsg, `"app"`, `"ghost"`, 1) {
		t.Fatalf("an unknown user must get exactly the wrong password's error, got %s %q", ghostCode, ghostMsg)
	}
	// An unknown user shows a salt that does not change between attempts,
	// and the default iteration count, as a real role does.
	a, b := f.serverFirst(t, "ghost"), f.serverFirst(t, "ghost")
	if saltOf(a) != saltOf(b) || !strings.HasSuffix(a, ",i=4096") {
		t.Fatalf("mock authentication must be stable: %q then %q", a, b)
	}
	real1 := f.serverFirst(t, pgtest.User)
	stored, err := f.pg.Psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
	if err != nil {
		t.Fatal(err)
	}
	v, err := pgwire.ParseVerifier(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(real1, fmt.Sprintf(",i=%d", v.Iterations)) || saltOf(real1) == saltOf(a) {
		t.Fatalf("a real role shows its own salt and iterations: %q", real1)
	}
	// The log tells the operator what the client is not told.
	if !f.logHas("mock authentication: the role does not exist") {
		t.Fatalf("the log must say why ghost was refused:\n%s", f.log.String())
	}
}

// SPEC: G7
func TestChangedPasswordWorksAtTheNextAttempt(t *testing.T) {
	f := newFixture(t, nil)
	if out, err := f.pg.Psql("postgres", "DROP ROLE IF EXISTS rotor; CREATE ROLE rotor LOGIN PASSWORD 'first'"); err != nil {
		t.Fatal(err, out)
	}
	if err := f.connectAs("rotor", "first", "127.0.0.1"); err != nil {
		t.Fatalf("first password: %v", err)
	}
	if out, err := f.pg.Psql("postgres", "ALTER ROLE rotor PASSWORD 'second'"); err != nil {
		t.Fatal(err, out)
	}
	// The gateway still holds the old verifier: the first attempt fails and
	// drops it; the next one looks it up again.
	if code, _ := pgCode(f.connectAs("rotor", "second", "127.0.0.1")); code != "28P01" {
		t.Fatalf("the gateway holds the old verifier for a minute: the first attempt must be refused and drop it, got %q", code)
	}
	if err := f.connectAs("rotor", "second", "127.0.0.1"); err != nil {
		t.Fatalf("the new password must work at the next attempt: %v", err)
	}
	if code, _ := pgCode(f.connectAs("rotor", "first", "127.0.0.1")); code != "28P01" {
		t.Fatalf("the old password must be refused, got %q", code)
	}
}

// SPEC: G7
func TestMD5RolePassesThroughLikePgBouncer(t *testing.T) {
	f := newFixture(t, nil)
	if out, err := f.pg.Psql("postgres", "SET password_encryption = 'md5'; DROP ROLE IF EXISTS legacy; CREATE ROLE legacy LOGIN PASSWORD 'old-school'"); err != nil {
		t.Fatal(err, out)
	}
	out, err := f.psql(f.conninfo("reports-db", "user=legacy"), "SELECT current_user", "PGPASSWORD=old-school")
	if err != nil || out != "legacy" {
		t.Fatalf("an md5 role with libpq's defaults: %v\n%s", err, out)
	}
	out, err = f.psql(f.conninfo("reports-db", "user=legacy"), "SELECT 1", "PGPASSWORD=wrong")
	if err == nil || !strings.Contains(out, `password authentication failed for user "legacy"`) {
		t.Fatalf("a wrong md5 password: %v\n%s", err, out)
	}
}

// SPEC: G7
func TestRepeatedFailuresSlowThatAddressOnly(t *testing.T) {
	// Through the gateway: the fourth failure from one address is answered
	// late, and says so in the log; another address is not.
	f := newFixture(t, nil)
	for i := 0; i < 4; i++ {
		f.connectAs(pgtest.User, "wrong", "127.0.0.1")
	}
	f.connectAs(pgtest.User, "wrong", "127.0.0.9")
	// Each session logs just after its client read its last word: wait for
	// both lines.
	f.logHas(`"client":"127.0.0.9"`)
	f.logHas("answered after")
	var slowed, other []string
	for _, l := range f.logLines() {
		if strings.Contains(l, "answered after") {
			slowed = append(slowed, l)
		}
		if strings.Contains(l, `"client":"127.0.0.9"`) {
			other = append(other, l)
		}
	}
	if len(slowed) != 1 || !strings.Contains(slowed[0], `"client":"127.0.0.1"`) || len(other) != 1 || strings.Contains(other[0], "answered after") {
		t.Fatalf("want the fourth failure from 127.0.0.1 slowed and 127.0.0.9 not:\n%s", strings.Join(f.logLines(), "\n"))
	}
}

// SPEC: G7
func TestPerServerAuthRoleAndLookupFailures(t *testing.T) {
	dir := t.TempDir()
	passfile := filepath.Join(dir, "auth.pgpass")
	os.WriteFile(passfile, []byte("*:*:*:pgplane_auth:"+pgtest.AuthPassword+"\n*:*:*:reports_auth:reports-secret\n"), 0o600)
	f := newFixture(t, func(c *Config) { c.AuthPassfile = passfile })
	if out, err := f.pg.Psql("postgres", "DROP ROLE IF EXISTS reports_auth; CREATE ROLE reports_auth LOGIN PASSWORD 'reports-secret'; "+
		strings.ReplaceAll(pgwire.LookupFunctionSQL("reports_auth"), "\n", " ")); err != nil {
		t.Fatal(err, out)
	}
	withRole := func(role string) {
		f.topo = strings.Replace(f.topo, "  - name: reports-db\n", "  - name: reports-db\n    parameters: {pgplane.auth_role: "+role+"}\n", 1)
		if err := f.gw.Update(f.snapshot(topology.State{})); err != nil {
			t.Fatal(err)
		}
	}
	withRole("reports_auth")
	if err := f.connectAs(pgtest.User, pgtest.Password, "127.0.0.1"); err != nil {
		t.Fatalf("with the server's own auth role: %v", err)
	}
	if out, _ := f.pg.Psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE usename = 'reports_auth'"); out != "1" {
		t.Fatalf("the lookup must have used reports_auth, sessions: %s", out)
	}
	// A role with no password in the file: the client is told to retry,
	// the log says what is missing.
	f.topo = strings.Replace(f.topo, "pgplane.auth_role: reports_auth", "pgplane.auth_role: nobody", 1)
	f.gw.Update(f.snapshot(topology.State{}))
	code, msg := pgCode(f.connectAs(pgtest.User, pgtest.Password, "127.0.0.1"))
	if code != "08006" || !strings.Contains(msg, "cannot check passwords now") || !f.logHas("has no line for") {
		t.Fatalf("want 08006 and the missing line logged, got %s %q\n%s", code, msg, f.log.String())
	}
}

// SPEC: G7
func TestVerifyFullToBackends(t *testing.T) {
	own, err := sharedPGCert(t)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.BackendTLS, c.BackendRootCAs = BackendTLSVerifyFull, own })
	if out, err := f.psql(f.conninfo("reports-db", ""), "SELECT current_user"); err != nil || out != "app" {
		t.Fatalf("verify-full with the backend's CA: %v\n%s", err, out)
	}
	other := x509.NewCertPool()
	ca, _ := os.ReadFile(f.caFile)
	other.AppendCertsFromPEM(ca)
	g := newFixture(t, func(c *Config) { c.BackendTLS, c.BackendRootCAs = BackendTLSVerifyFull, other })
	out, err := g.psql(g.conninfo("reports-db", ""), "SELECT 1")
	if err == nil || !strings.Contains(out, "cannot check passwords now") || !g.logHas("certificate") {
		t.Fatalf("verify-full with another CA must refuse the backend: %v\n%s\n%s", err, out, g.log.String())
	}
}

func sharedPGCert(t *testing.T) (*x509.CertPool, error) {
	newFixture(t, nil) // starts the shared servers
	pem, err := sharedPG.pg.CertificatePEM()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool, nil
}
