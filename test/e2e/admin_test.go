package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pgplanectlAt runs the real pgplanectl against an admin API.
func pgplanectlAt(t *testing.T, endpoint string, args ...string) (string, int) {
	t.Helper()
	return pgplanectlIn(t, "", endpoint, args...)
}

// pgplanectlIn is pgplanectlAt run inside a network namespace ("" for
// none).
func pgplanectlIn(t *testing.T, netns, endpoint string, args ...string) (string, int) {
	t.Helper()
	argv := append([]string{ctl}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PGPLANE_ENDPOINT="+endpoint)
	out, err := cmd.CombinedOutput()
	code := 0
	if e, ok := err.(*exec.ExitError); ok {
		code = e.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// apiDo sends one request to the admin API and returns the status and body.
func apiDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminNode is a dev appliance with a gateway in front of a real PostgreSQL,
// the admin API and a state directory.
type adminNode struct {
	*node
	dir, corefile, endpoint, ca string
	dnsPort, gwPort             int
}

func startAdminNode(t *testing.T) *adminNode {
	t.Helper()
	dir := t.TempDir()
	_, pgs := backends(t, dir, 1)
	topo := strings.NewReplacer("127.0.0.1:55432", pgs[0].Addr, "127.0.0.1:55433", pgs[0].Addr).Replace(devTopology(t))
	writeFile(t, dir, "topology.yaml", topo)
	a := &adminNode{dir: dir, dnsPort: freePort(t, "127.0.0.1"), gwPort: freePort(t, "127.0.0.1")}
	adminPort := freePort(t, "127.0.0.1")
	a.endpoint = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	a.corefile = fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    pgplane topology.yaml {
        reload 100ms
        gateway 127.0.0.1:%d 127.0.0.2:%d
        gateway_tls dev tls
        gateway_auth_user pgplane_auth auth.pgpass
        admin 127.0.0.1:%d
        state state
    }
}
`, a.dnsPort, a.gwPort, a.gwPort, adminPort)
	a.start(t)
	return a
}

func (a *adminNode) start(t *testing.T) {
	a.node = startNode(t, a.dir, a.corefile, fmt.Sprintf("127.0.0.1:%d", a.dnsPort), "")
	m := regexp.MustCompile(`CA certificate (\S+);`).FindStringSubmatch(a.log.String())
	if m == nil {
		t.Fatalf("no dev CA in the log:\n%s", a.log.String())
	}
	a.ca = m[1]
}

func (a *adminNode) ctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return pgplanectlAt(t, a.endpoint, args...)
}

// psqlReports connects to reports-db through the gateway from 127.0.0.1.
// Dev mode makes a new gateway certificate when a zone is added, which the
// backend does not present: SCRAM channel binding then cannot cross the
// gateway, so this client does without it.
func (a *adminNode) psqlReports(t *testing.T) (string, error) {
	return psql(t, fmt.Sprintf("host=reports-db.postgres.database.azure.com hostaddr=127.0.0.1 port=%d sslmode=verify-full sslrootcert=%s user=app dbname=appdb channel_binding=disable", a.gwPort, a.ca), "SELECT 42")
}

// everything is the whole desired state as the API lists it, and the state
// file: a refused change must leave both as they were.
func (a *adminNode) everything(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, path := range []string{"/v1/servers", "/v1/vnets", "/v1/private-dns-zones"} {
		_, body := apiDo(t, "GET", a.endpoint+path, "")
		b.WriteString(body)
	}
	b.WriteString(appliedOnDisk(a.dir))
	return b.String()
}

// appliedOnDisk is a node's applied state on disk: the whole state and the
// journal of the entries after it.
func appliedOnDisk(dir string) string {
	whole, _ := os.ReadFile(filepath.Join(dir, "state", "raft", "applied.json"))
	journal, _ := os.ReadFile(filepath.Join(dir, "state", "raft", "applied.journal"))
	return string(whole) + string(journal)
}

// haServer is the pgplanectl command that creates an HA private server in
// app-vnet's subnet tiny: four of its eleven usable addresses (T11).
func haServer(name, primary, standby string) []string {
	return []string{"create", "--name", name, "--location", "eastus2", "--vnet", "app-vnet", "--subnet", "tiny",
		"--private-dns-zone", "contoso.private.postgres.database.azure.com", "--address", primary, "--standby-address", standby,
		"--high-availability", "Enabled", "--backend", "127.0.0.1:5432", "--standby-backend", "127.0.0.1:5433"}
}

// SPEC: A1 A2 C5 F1 F2 F3 T2 T6 T7 T8 T9 T10 T11 Z2 Z3 D10 G4
func TestAdminAPIChangesAndRefusals(t *testing.T) {
	a := startAdminNode(t)
	if out, err := a.psqlReports(t); err != nil || out != "42" {
		t.Fatalf("reports-db through the gateway: %v %s", err, out)
	}

	// A firewall rule from the file, deleted at run time, stops admitting;
	// one created at run time admits again.
	if out, code := a.ctl(t, "firewall-rule", "delete", "--server", "reports-db", "--name", "loopback"); code != 0 {
		t.Fatalf("delete: %d %s", code, out)
	}
	if out, err := a.psqlReports(t); err == nil || !strings.Contains(out, "no firewall rule") {
		t.Fatalf("without the loopback rule psql must be refused: %v %s", err, out)
	}
	out, code := a.ctl(t, "firewall-rule", "create", "--server", "reports-db", "--name", "office", "--start-ip-address", "127.0.0.1", "--end-ip-address", "127.0.0.1")
	if code != 0 || !strings.Contains(out, "office  127.0.0.1") {
		t.Fatalf("create: %d %s", code, out)
	}
	// Z2 is refused from the side of the object being created.
	if out, code := a.ctl(t, "private-dns", "zone", "create", "--name", "reports-db.postgres.database.azure.com"); code != 1 ||
		!strings.Contains(out, "a server named reports-db exists; a private DNS zone cannot be named reports-db.postgres.database.azure.com") || strings.Contains(out, "zone named") {
		t.Fatalf("a zone named after a server: %d %s", code, out)
	}
	if out, code := a.ctl(t, "private-dns", "zone", "create", "--name", "billing-db.postgres.database.azure.com"); code != 0 {
		t.Fatalf("zone create: %d %s", code, out)
	}
	if out, code := a.ctl(t, "server", "create", "--name", "billing-db", "--location", "eastus2", "--backend", "127.0.0.1:5432"); code != 1 ||
		!strings.Contains(out, "a private DNS zone named billing-db.postgres.database.azure.com exists") || strings.Contains(out, "a server named") {
		t.Fatalf("a server named after a zone: %d %s", code, out)
	}
	// az's --output and --query, and global flags before the command.
	cmd := exec.Command(ctl, "--endpoint", a.endpoint, "--output", "tsv", "firewall-rule", "list", "--server", "reports-db", "--query", "[?name=='office'].startIpAddress")
	if b, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "127.0.0.1" {
		t.Fatalf("--output tsv --query: %v %s", err, b)
	}
	if out, err := a.psqlReports(t); err != nil || out != "42" {
		t.Fatalf("the new rule must admit at once: %v %s", err, out)
	}

	// Objects for the refusals below.
	for _, cmd := range [][]string{
		{"private-dns", "zone", "create", "--name", "billing.postgres.database.azure.com"},
		{"private-dns", "zone", "create", "--name", "fabrikam.private.postgres.database.azure.com"},
		{"vnet", "subnet", "create", "--vnet-name", "app-vnet", "--name", "plain", "--address-prefixes", "127.0.1.32/28"},
		{"vnet", "subnet", "create", "--vnet-name", "app-vnet", "--name", "tiny", "--address-prefixes", "127.0.1.48/28", "--delegations", "Microsoft.DBforPostgreSQL/flexibleServers"},
		haServer("ha-one", "127.0.1.52", "127.0.1.53"),
		haServer("ha-two", "127.0.1.54", "127.0.1.55"),
	} {
		if out, code := a.ctl(t, cmd...); code != 0 {
			t.Fatalf("%v: %d %s", cmd, code, out)
		}
	}

	refusals := []struct {
		args []string
		code int    // pgplanectl's exit code
		want string // in its message: rule ID and what is wrong
	}{
		{[]string{"firewall-rule", "create", "--server", "reports-db", "--name", "v6", "--start-ip-address", "2001:db8::1", "--end-ip-address", "2001:db8::9"}, 1, `F1: firewall rule "v6" of server "reports-db": startIpAddress: "2001:db8::1" is an IPv6 address`},
		{[]string{"firewall-rule", "create", "--server", "reports-db", "--name", "back", "--start-ip-address", "10.0.0.9", "--end-ip-address", "10.0.0.1"}, 1, "F2: "},
		{[]string{"firewall-rule", "create", "--server", "reports-db", "--name", "office", "--start-ip-address", "10.0.0.1", "--end-ip-address", "10.0.0.1"}, 1, `already exists (HTTP 409)`},
		{[]string{"firewall-rule", "create", "--server", "orders-db", "--name", "x", "--start-ip-address", "10.0.0.1", "--end-ip-address", "10.0.0.1"}, 1, `server "orders-db"`},
		{[]string{"firewall-rule", "create", "--server", "nope-db", "--name", "x", "--start-ip-address", "10.0.0.1", "--end-ip-address", "10.0.0.1"}, 1, `server "nope-db" does not exist (HTTP 404)`},
		{[]string{"firewall-rule", "create", "--server", "reports-db", "--name", "x"}, 2, "--start-ip-address is required"},
		{[]string{"vnet", "subnet", "create", "--vnet-name", "app-vnet", "--name", "small", "--address-prefixes", "127.0.1.64/29"}, 1, "T6: "},
		{[]string{"vnet", "subnet", "create", "--vnet-name", "app-vnet", "--name", "AzureBastionSubnet", "--address-prefixes", "127.0.1.64/28"}, 1, "T8: "},
		{[]string{"private-dns", "zone", "create", "--name", "reports-db.postgres.database.azure.com"}, 1, "Z2: "},
		{[]string{"create", "--name", "billing", "--location", "eastus2", "--backend", "127.0.0.1:5432"}, 1, "Z2: "},
		{[]string{"create", "--name", "z1-db", "--location", "eastus2", "--backend", "127.0.0.1:5432", "--vnet", "app-vnet", "--subnet", "db", "--private-dns-zone", "contoso.private.postgres.database.azure.com", "--address", "127.0.1.0"}, 1, "T7: "},
		{[]string{"create", "--name", "z2-db", "--location", "eastus2", "--backend", "127.0.0.1:5432", "--vnet", "app-vnet", "--subnet", "plain", "--private-dns-zone", "contoso.private.postgres.database.azure.com", "--address", "127.0.1.36"}, 1, "T9: "},
		{[]string{"update", "--name", "reports-db", "--vnet", "app-vnet", "--subnet", "db", "--private-dns-zone", "contoso.private.postgres.database.azure.com", "--address", "127.0.1.6"}, 1, "T2: server \"reports-db\": access: access is public and is fixed at creation"},
		{[]string{"update", "--name", "orders-db", "--private-dns-zone", "fabrikam.private.postgres.database.azure.com"}, 1, "Z3: "},
		{haServer("ha-three", "127.0.1.56", "127.0.1.57"), 1, "T11: "},
		{[]string{"parameter", "set", "--server", "reports-db", "--name", "ssl_min_protocol_version", "--value", "TLSv1.9"}, 1, "G4: "},
		{[]string{"parameter", "set", "--server", "reports-db", "--name", "work_mem", "--value", "4MB"}, 1, "unknown parameter \"work_mem\""},
		{[]string{"show", "--name", "nope-db"}, 1, `server "nope-db" does not exist`},
		{[]string{"private-dns", "link", "vnet", "delete", "--zone-name", "billing.postgres.database.azure.com", "--name", "app-vnet"}, 1, "has no link"},
		{[]string{"server", "frobnicate"}, 2, "unknown command"},
	}
	for _, r := range refusals {
		before := a.everything(t)
		out, code := a.ctl(t, r.args...)
		if code != r.code || !strings.Contains(out, r.want) {
			t.Errorf("pgplanectl %s: exit %d, want %d with %q:\n%s", strings.Join(r.args, " "), code, r.code, r.want, out)
		}
		if after := a.everything(t); after != before {
			t.Errorf("pgplanectl %s was refused but changed the state", strings.Join(r.args, " "))
		}
	}

	// Refusals the CLI cannot make: a subnet holding a server keeps its
	// CIDR (T10), and a body field the API does not know is named.
	for _, r := range []struct{ method, path, body, want string }{
		{"PUT", "/v1/vnets/app-vnet/subnets/db", `{"cidr": "127.0.1.16/28", "delegation": "Microsoft.DBforPostgreSQL/flexibleServers"}`, `409 T10: subnet "db" in vnet "app-vnet": cidr: the CIDR 127.0.1.0/28 cannot change while the subnet holds server "orders-db"`},
		{"PUT", "/v1/servers/reports-db/firewall-rules/x", `{"startIpAddress": "10.0.0.1", "endIpAddress": "10.0.0.1", "comment": "hi"}`, `400 request body: json: unknown field "comment"`},
		{"DELETE", "/v1/vnets/app-vnet/subnets/db", "", `409 T10: subnet "db" in vnet "app-vnet": server "orders-db" uses it; delete the server first`},
		{"DELETE", "/v1/vnets/app-vnet", "", `409 T10: vnet "app-vnet": server "orders-db" uses it; delete the server first`},
		{"DELETE", "/v1/private-dns-zones/contoso.private.postgres.database.azure.com", "", `409 in-use: private DNS zone "contoso.private.postgres.database.azure.com": server "orders-db" uses it`},
	} {
		before := a.everything(t)
		status, body := apiDo(t, r.method, a.endpoint+r.path, r.body)
		var e struct{ Error string }
		json.Unmarshal([]byte(body), &e)
		if got := fmt.Sprintf("%d %s", status, e.Error); !strings.HasPrefix(got, r.want) {
			t.Errorf("%s %s: got %s, want %s", r.method, r.path, got, r.want)
		}
		if a.everything(t) != before {
			t.Errorf("%s %s was refused but changed the state", r.method, r.path)
		}
	}

	// Locks: ReadOnly freezes the zone's records and links (D10), a locked
	// zone is not deleted; lock none lifts both.
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"private-dns", "zone", "update", "--name", "contoso.private.postgres.database.azure.com", "--lock", "ReadOnly"}, 0, "ReadOnly"},
		{[]string{"update", "--name", "orders-db", "--address", "127.0.1.6"}, 1, "D10: "},
		{[]string{"private-dns", "link", "vnet", "create", "--zone-name", "contoso.private.postgres.database.azure.com", "--name", "hub-vnet"}, 1, "locked ReadOnly"},
		{[]string{"private-dns", "zone", "delete", "--name", "contoso.private.postgres.database.azure.com", "--yes"}, 1, "cannot be deleted"},
		{[]string{"private-dns", "zone", "update", "--name", "contoso.private.postgres.database.azure.com", "--lock", "none"}, 0, "none"},
		{[]string{"private-dns", "zone", "update", "--name", "billing.postgres.database.azure.com", "--lock", "CanNotDelete"}, 0, "CanNotDelete"},
		{[]string{"private-dns", "zone", "delete", "--name", "billing.postgres.database.azure.com", "--yes"}, 1, "locked CanNotDelete"},
	}
	for _, s := range steps {
		if out, code := a.ctl(t, s.args...); code != s.code || !strings.Contains(out, s.want) {
			t.Errorf("pgplanectl %s: exit %d, want %d with %q:\n%s", strings.Join(s.args, " "), code, s.code, s.want, out)
		}
	}

	// A private server made entirely at run time: VNet, subnet, zone, link,
	// server. Its name resolves from the linked VNet, not from elsewhere.
	for _, cmd := range [][]string{
		{"vnet", "create", "--name", "lab-vnet", "--location", "eastus2", "--address-prefixes", "127.0.8.0/24"},
		{"vnet", "subnet", "create", "--vnet-name", "lab-vnet", "--name", "db", "--address-prefixes", "127.0.8.0/28", "--delegations", "Microsoft.DBforPostgreSQL/flexibleServers"},
		{"private-dns", "link", "vnet", "create", "--zone-name", "fabrikam.private.postgres.database.azure.com", "--name", "lab-vnet"},
		{"create", "--name", "lab-db", "--location", "eastus2", "--vnet", "lab-vnet", "--subnet", "db", "--private-dns-zone", "fabrikam.private.postgres.database.azure.com", "--address", "127.0.8.4", "--backend", "127.0.0.1:5432"},
		{"vnet", "peering", "create", "--vnet-name", "lab-vnet", "--remote-vnet", "hub-vnet"},
		{"parameter", "set", "--server", "lab-db", "--name", "require_secure_transport", "--value", "off"},
	} {
		if out, code := a.ctl(t, cmd...); code != 0 {
			t.Fatalf("%v: %d %s", cmd, code, out)
		}
	}
	labA := "lab-db.fabrikam.private.postgres.database.azure.com. 5 IN A 127.0.8.4"
	dig(t, args(a.dnsPort, "-b", "127.0.8.10", "lab-db.postgres.database.azure.com", "A")...).expect(t, "NOERROR",
		"lab-db.postgres.database.azure.com. 5 IN CNAME lab-db.fabrikam.private.postgres.database.azure.com.", labA)
	if r := dig(t, args(a.dnsPort, "-b", "127.0.2.10", "lab-db.postgres.database.azure.com", "A")...); strings.Contains(r.out, "127.0.8.4") {
		t.Fatalf("a peered VNet without a link must not resolve the private address:\n%s", r.out)
	}
	if out, _ := a.ctl(t, "parameter", "show", "--server", "lab-db", "--name", "require_secure_transport", "--output", "json"); !strings.Contains(out, `"value": "off"`) {
		t.Fatalf("parameter show: %s", out)
	}
	if out, code := a.ctl(t, "private-dns", "link", "vnet", "delete", "--zone-name", "fabrikam.private.postgres.database.azure.com", "--name", "lab-vnet"); code != 0 {
		t.Fatalf("link delete: %s", out)
	}
	if r := dig(t, args(a.dnsPort, "-b", "127.0.8.10", "lab-db.postgres.database.azure.com", "A")...); strings.Contains(r.out, "127.0.8.4") {
		t.Fatalf("without its link the VNet must not resolve the private address:\n%s", r.out)
	}
	// Without a terminal, a delete needs --yes, and nothing changes without it.
	if out, code := a.ctl(t, "delete", "--name", "lab-db"); code != 2 || !strings.Contains(out, "not confirmed; nothing changed") {
		t.Fatalf("delete without --yes: %d %s", code, out)
	}
	if out, code := a.ctl(t, "show", "--name", "lab-db"); code != 0 {
		t.Fatalf("an unconfirmed delete must change nothing: %s", out)
	}
	if out, code := a.ctl(t, "delete", "--name", "lab-db", "--yes"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %s", code, out)
	}
	// A VNet is deleted with its subnets and peerings, on both sides; made
	// again, it starts empty.
	for _, cmd := range [][]string{
		{"private-dns", "link", "vnet", "create", "--zone-name", "fabrikam.private.postgres.database.azure.com", "--name", "lab-vnet"},
		{"vnet", "delete", "--name", "lab-vnet", "-y"},
		{"vnet", "create", "--name", "lab-vnet", "--location", "eastus2", "--address-prefixes", "127.0.8.0/24"},
	} {
		if out, code := a.ctl(t, cmd...); code != 0 {
			t.Fatalf("%v: %d %s", cmd, code, out)
		}
	}
	if out, _ := a.ctl(t, "vnet", "show", "--name", "lab-vnet", "--output", "json"); strings.Contains(out, "subnets") || strings.Contains(out, "peerings") {
		t.Fatalf("a VNet made again must not inherit the deleted one's subnets and peerings:\n%s", out)
	}
	if out, _ := a.ctl(t, "private-dns", "zone", "show", "--name", "fabrikam.private.postgres.database.azure.com"); strings.Contains(out, "lab-vnet") {
		t.Fatalf("a deleted VNet's zone links go with it:\n%s", out)
	}
	// A peering listed on app-vnet's side is removed from hub-vnet's.
	if out, code := a.ctl(t, "vnet", "peering", "delete", "--vnet-name", "hub-vnet", "--remote-vnet", "app-vnet"); code != 0 {
		t.Fatalf("peering delete: %s", out)
	}
	if out, _ := a.ctl(t, "vnet", "show", "--name", "app-vnet"); strings.Contains(out, "hub-vnet") {
		t.Fatalf("the peering must be gone from both sides:\n%s", out)
	}

	// A restart restores every change: the deleted file rule stays deleted,
	// the created one admits, the deleted server stays deleted.
	a.stop(syscall.SIGTERM)
	a.start(t)
	if out, code := a.ctl(t, "firewall-rule", "list", "--server", "reports-db"); code != 0 || strings.Contains(out, "loopback") || !strings.Contains(out, "office") {
		t.Fatalf("after a restart the rules must be as changed: %d\n%s", code, out)
	}
	if out, code := a.ctl(t, "show", "--name", "lab-db"); code != 1 {
		t.Fatalf("lab-db must stay deleted after a restart: %s", out)
	}
	if out, err := a.psqlReports(t); err != nil || out != "42" {
		t.Fatalf("the run-time rule must admit after a restart: %v %s", err, out)
	}

	// The file stays the bootstrap: an edit adds what it adds, but an object
	// changed or deleted at run time keeps its run-time version.
	topo, _ := os.ReadFile(filepath.Join(a.dir, "topology.yaml"))
	edited := strings.Replace(string(topo), "      - {name: loopback,", "      - {name: file-rule, startIpAddress: 127.0.9.1, endIpAddress: 127.0.9.1}\n      - {name: loopback,", 1)
	writeFile(t, a.dir, "topology.yaml", edited)
	waitFor(t, "the file's new rule", 10*time.Second, func() bool {
		_, code := a.ctl(t, "firewall-rule", "show", "--server", "reports-db", "--name", "file-rule")
		return code == 0
	})
	if out, code := a.ctl(t, "firewall-rule", "show", "--server", "reports-db", "--name", "loopback"); code != 1 {
		t.Fatalf("a rule deleted at run time must stay deleted through file edits: %s", out)
	}

	// F3: the 0.0.0.0 rule admits every VNet address space, run-time VNets
	// included. Without the office rule 127.0.0.1 is refused; a VNet made
	// around it puts it inside the cloud; deleting the VNet takes it out.
	if out, code := a.ctl(t, "firewall-rule", "delete", "--server", "reports-db", "--name", "office"); code != 0 {
		t.Fatalf("delete office: %s", out)
	}
	if out, err := a.psqlReports(t); err == nil {
		t.Fatalf("127.0.0.1 is outside every VNet and every rule: %s", out)
	}
	if out, code := a.ctl(t, "vnet", "create", "--name", "lo-vnet", "--location", "eastus2", "--address-prefixes", "127.0.0.0/24"); code != 0 {
		t.Fatalf("vnet create: %s", out)
	}
	if out, err := a.psqlReports(t); err != nil || out != "42" {
		t.Fatalf("inside a VNet, the 0.0.0.0 rule admits: %v %s", err, out)
	}
	if out, code := a.ctl(t, "vnet", "delete", "--name", "lo-vnet", "--yes"); code != 0 {
		t.Fatalf("vnet delete: %s", out)
	}
	if out, err := a.psqlReports(t); err == nil || !strings.Contains(out, "no firewall rule") {
		t.Fatalf("outside every VNet again, refused: %v %s", err, out)
	}
}

// The admin API off the dev defaults: a token, and HTTPS so that the token
// never crosses the network in the clear.
//
// SPEC: A1
func TestAdminAPIOverTLSWithToken(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "topology.yaml", devTopology(t))
	writeFile(t, dir, "admin.token", "s3cret-token\n")
	if out, err := exec.Command(ctl, "certs", "create", "--dir", filepath.Join(dir, "admin-tls"), "--names", "localhost").CombinedOutput(); err != nil {
		t.Fatalf("certs create: %v %s", err, out)
	}
	dnsPort, adminPort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	startNode(t, dir, fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    pgplane topology.yaml {
        admin 127.0.0.1:%d
        admin_token_file admin.token
        admin_tls admin-tls/server.crt admin-tls/server.key
        state state
    }
}
`, dnsPort, adminPort), fmt.Sprintf("127.0.0.1:%d", dnsPort), "")
	https := fmt.Sprintf("https://localhost:%d", adminPort)
	ca := filepath.Join(dir, "admin-tls", "ca.crt")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"list", "--endpoint", https, "--token", "s3cret-token", "--cacert", ca}, 0, "reports-db"},
		{[]string{"firewall-rule", "create", "--server", "reports-db", "--name", "tls", "--start-ip-address", "10.0.0.1", "--end-ip-address", "10.0.0.1", "--endpoint", https, "--token", "s3cret-token", "--cacert", ca}, 0, "tls"},
		{[]string{"list", "--endpoint", https, "--token", "wrong", "--cacert", ca}, 1, "a valid bearer token is required (pgplanectl --token, or PGPLANE_TOKEN) (HTTP 401)"},
		{[]string{"list", "--endpoint", https, "--token", "s3cret-token"}, 1, "certificate signed by unknown authority"},
		{[]string{"list", "--endpoint", fmt.Sprintf("http://localhost:%d", adminPort), "--token", "s3cret-token"}, 1, "HTTP 400"},
	} {
		out, code := pgplanectlAt(t, "", c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("pgplanectl %s: exit %d, want %d with %q:\n%s", strings.Join(c.args, " "), code, c.code, c.want, out)
		}
	}
}
