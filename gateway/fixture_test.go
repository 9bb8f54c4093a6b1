package gateway

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgplane/pgplane/internal/freeport"

	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/internal/syncbuf"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// fixture is a gateway in front of a real PostgreSQL.
type fixture struct {
	t      *testing.T
	pg     *pgtest.Server
	gw     *Gateway
	addr   string // the gateway's listen address
	port   int
	caFile string
	log    *syncbuf.Buffer
	topo   string
	dir    string
}

// fixtureTopology has a public server (loopback admitted), a locked public
// server (no rule admits loopback), a plaintext-tolerant server, a private
// server in app-vnet (127.0.1.0/24) peered with hub-vnet, all on a backend
// with its own certificate, gwcert-db on a backend that presents the
// gateway's certificate, and ha-db on both (the first its primary).
const fixtureTopology = `datacenterRanges: [127.0.200.0/24]
regions:
  - {name: eastus2, gateways: [127.0.0.1, 127.0.0.2]}
vnets:
  - name: app-vnet
    region: eastus2
    addressSpaces: [127.0.1.0/24]
    peerings: [hub-vnet]
    subnets: [{name: db, cidr: 127.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]
  - {name: hub-vnet, region: eastus2, addressSpaces: [127.0.2.0/24]}
  - {name: far-vnet, region: eastus2, addressSpaces: [127.0.3.0/24]}
privateDnsZones:
  - {name: contoso.private.postgres.database.azure.com, links: [app-vnet]}
servers:
  - name: reports-db
    region: eastus2
    access: public
    backends: {primary: "BACKEND"}
    firewallRules:
      - {name: loopback, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}
      - {name: proxied-office, startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.9}
  - name: locked-db
    region: eastus2
    access: public
    backends: {primary: "BACKEND"}
    firewallRules:
      - {name: office, startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.9}
  - name: plain-db
    region: eastus2
    access: public
    backends: {primary: "BACKEND"}
    parameters: {require_secure_transport: "off"}
    firewallRules:
      - {name: AllowAllAzureServicesAndResourcesWithinAzureIps, startIpAddress: 0.0.0.0, endIpAddress: 0.0.0.0}
      - {name: loopback, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}
  - name: orders-db
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}
    addresses: {primary: 127.0.1.4}
    backends: {primary: "BACKEND"}
  - name: gwcert-db
    region: eastus2
    access: public
    backends: {primary: "GWCERTBACKEND"}
    firewallRules:
      - {name: loopback, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}
  - name: ha-db
    region: eastus2
    access: public
    highAvailability: true
    backends: {primary: "BACKEND", standby: "GWCERTBACKEND"}
    firewallRules:
      - {name: loopback, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}
`

// sharedPG is one PostgreSQL for the package's tests; starting one takes a
// second or two.
var sharedPG struct {
	once   sync.Once
	pg     *pgtest.Server // its own self-signed certificate
	gwCert *pgtest.Server // the gateway's certificate
	dir    string
	auth   string // the auth role's password file
	err    error
}

// newFixture starts a gateway (and, once, the two PostgreSQL servers).
func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	sharedPG.once.Do(func() {
		sharedPG.dir, sharedPG.err = os.MkdirTemp("", "pgplane-gw")
		if sharedPG.err != nil {
			return
		}
		if sharedPG.auth, sharedPG.err = pgtest.WriteAuthPassfile(sharedPG.dir); sharedPG.err != nil {
			return
		}
		// The usual backend: a self-signed certificate of its own; the role
		// "legacy" logs in with md5.
		if sharedPG.pg, sharedPG.err = pgtest.Start("", pgtest.Options{OwnCertificate: true, HBA: "host all legacy 127.0.0.1/32 md5\n"}); sharedPG.err != nil {
			return
		}
		// A backend presenting the gateway's own certificate: passthrough's
		// channel binding then works across the gateway.
		var certPEM, keyPEM []byte
		if certPEM, keyPEM, sharedPG.err = gatewayCertPEM(); sharedPG.err != nil {
			return
		}
		sharedPG.gwCert, sharedPG.err = pgtest.Start("", pgtest.Options{Cert: certPEM, Key: keyPEM})
	})
	if sharedPG.err != nil {
		t.Fatal(sharedPG.err)
	}
	f := &fixture{t: t, pg: sharedPG.pg, log: &syncbuf.Buffer{}, dir: t.TempDir()}
	cert, ca, err := DevCertificates(filepath.Join(sharedPG.dir, "gateway-tls"), gatewayNames)
	if err != nil {
		t.Fatal(err)
	}
	f.caFile = ca
	f.topo = strings.ReplaceAll(fixtureTopology, "GWCERTBACKEND", sharedPG.gwCert.Addr)
	f.topo = strings.ReplaceAll(f.topo, "BACKEND", f.pg.Addr)
	snap := f.snapshot(topology.State{})
	if f.port, err = freeport.Pick(); err != nil {
		t.Fatal(err)
	}
	f.addr = fmt.Sprintf("127.0.0.1:%d", f.port)
	cfg := Config{
		Listen:   []string{f.addr},
		NodeID:   3,
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger:   zerolog.New(f.log),
		AuthRole: pgtest.AuthRole, AuthPassfile: sharedPG.auth,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	f.gw, err = New(cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.gw.Stop()
		if t.Failed() {
			t.Logf("gateway log:\n%s", f.log.String())
		}
	})
	return f
}

func (f *fixture) snapshot(st topology.State) *topology.Snapshot {
	f.t.Helper()
	topo, _, err := topology.Parse("fixture.yaml", []byte(f.topo))
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := topology.NewSnapshot(topo, st, 1)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// psql runs the real psql with a libpq connection string and extra
// environment; it returns what psql printed and its error.
func (f *fixture) psql(conninfo string, sql string, env ...string) (string, error) {
	cmd := exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql)
	cmd.Env = append(append(os.Environ(), "PGPASSWORD="+pgtest.Password, "PGCONNECT_TIMEOUT=10"), env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// conninfo is a libpq connection string to a server through the gateway.
func (f *fixture) conninfo(server, extra string) string {
	return fmt.Sprintf("host=%s.postgres.database.azure.com hostaddr=127.0.0.1 port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s %s",
		server, f.port, pgtest.User, pgtest.Database, f.caFile, extra)
}

// logLines returns the gateway's connection log lines.
func (f *fixture) logLines() []string {
	var out []string
	for _, l := range strings.Split(f.log.String(), "\n") {
		if strings.Contains(l, `"message":"connection"`) {
			out = append(out, l)
		}
	}
	return out
}

// logHas waits up to five seconds for the gateway's log to contain want:
// a session logs just after its client has read the session's last word.
func (f *fixture) logHas(want string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(f.log.String(), want) {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, pg := range []*pgtest.Server{sharedPG.pg, sharedPG.gwCert} {
		if pg != nil {
			pg.Stop()
			os.RemoveAll(pg.Dir)
		}
	}
	if sharedPG.dir != "" {
		os.RemoveAll(sharedPG.dir)
	}
	os.Exit(code)
}

func fmtInt(i int) string { return fmt.Sprint(i) }

var gatewayNames = []string{"*.postgres.database.azure.com", "*.contoso.private.postgres.database.azure.com"}

// gatewayCertPEM makes (once) and returns the gateway's dev certificate.
func gatewayCertPEM() (cert, key []byte, err error) {
	dir := filepath.Join(sharedPG.dir, "gateway-tls")
	if _, _, err := DevCertificates(dir, gatewayNames); err != nil {
		return nil, nil, err
	}
	if cert, err = os.ReadFile(filepath.Join(dir, DevCertFile)); err != nil {
		return nil, nil, err
	}
	key, err = os.ReadFile(filepath.Join(dir, DevKeyFile))
	return cert, key, err
}
