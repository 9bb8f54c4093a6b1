package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The lab of the DNS tools' tests: a namespace where the appliance answers
// on 168.63.129.16 (an address DNSViz counts as public, as in Azure) and a
// root zone on 192.0.2.53 delegates postgres.database.azure.com to it, so
// DNSViz walks the delegation as it would on the Internet, without leaving
// the namespace. Clients ask from the dev topology's VNets, 127.x ranges on
// the namespace's lo.
const (
	labResolver = "168.63.129.16"
	labRoot     = "192.0.2.53"
	labRootZone = `$ORIGIN .
@ 3600 IN SOA a.root-servers.test. hostmaster.test. 1 3600 600 86400 60
@ 3600 IN NS a.root-servers.test.
a.root-servers.test. 3600 IN A 192.0.2.53
postgres.database.azure.com. 3600 IN NS ns1.lab.test.
ns1.lab.test. 3600 IN A 168.63.129.16
`
)

// dnsLab starts the lab's appliance (with extra properties in its pgplane
// block) and root server, and returns the namespace.
func dnsLab(t *testing.T, properties string) string {
	t.Helper()
	ns := netns(t, labResolver, labRoot)
	dir := t.TempDir()
	writeFile(t, dir, "topology.yaml", devTopology(t))
	writeFile(t, dir, "db.root", labRootZone)
	startNode(t, dir, fmt.Sprintf(`postgres.database.azure.com:53 {
    bind %s
    pgplane topology.yaml {
        ns ns1.lab.test
        %s
    }
}
.:53 {
    bind %s
    file db.root .
}
`, labResolver, properties, labRoot), "", ns)
	waitFor(t, "the lab's appliance to answer", 15*time.Second, func() bool {
		r, err := digTry(ns, "@"+labResolver, "postgres.database.azure.com", "SOA")
		return err == nil && r.status == "NOERROR"
	})
	return ns
}

// DNSViz, asked from a VNet linked to the private zone, from one that is
// not, and from outside every VNet, finds no error and no warning: each
// private zone is a zone of its own (SOA and NS at its apex) in the views
// that see it, and NODATA answers carry the SOA of the zone they come from.
//
// SPEC: D1 D2 D3 D4 D7
func TestDNSVizFindsNoErrors(t *testing.T) {
	ns := dnsLab(t, "")
	names := []string{
		"orders-db.contoso.private.postgres.database.azure.com",
		"contoso.private.postgres.database.azure.com",
		"orders-db.postgres.database.azure.com",
		"reports-db.postgres.database.azure.com",
	}
	for _, from := range []struct{ what, source string }{
		{"a VNet linked to the private zone", "127.0.1.10"},
		{"a VNet not linked to it", "127.0.2.10"},
		{"outside every VNet", "127.0.0.9"},
	} {
		args := append([]string{"netns", "exec", ns, "dnsviz", "probe", "-A", "-a", "postgres.database.azure.com",
			"-x", ".:a.root-servers.test=" + labRoot, "-b", from.source}, names...)
		probe, err := exec.Command("ip", args...).Output()
		if err != nil {
			t.Fatalf("dnsviz probe from %s: %v", from.what, err)
		}
		if !strings.Contains(string(probe), "contoso.private.postgres.database.azure.com.") {
			t.Fatalf("dnsviz probe from %s analysed nothing:\n%s", from.what, probe)
		}
		grok := exec.Command("ip", "netns", "exec", ns, "dnsviz", "grok", "-l", "warning")
		grok.Stdin = strings.NewReader(string(probe))
		out, err := grok.CombinedOutput()
		if err != nil {
			t.Fatalf("dnsviz grok from %s: %v\n%s", from.what, err, out)
		}
		if s := strings.TrimSpace(string(out)); s != "" && s != "{}" {
			t.Errorf("dnsviz from %s reports:\n%s", from.what, s)
		}
	}
}

// kdig over TCP and with a small EDNS buffer gets the same answers as dig;
// an answer too large for 512 bytes over UDP without EDNS comes back
// truncated, and whole over TCP.
//
// SPEC: D1
func TestTruncationAndTCP(t *testing.T) {
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("ns%02d.a-rather-long-name-server-label.lab.test", i))
	}
	ns := dnsLab(t, "ns "+strings.Join(many, " "))
	kdig := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "kdig", "@" + labResolver}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kdig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, args := range [][]string{
		{"+tcp", "-b", "127.0.1.10", "orders-db.postgres.database.azure.com", "A"},
		{"+bufsize=512", "-b", "127.0.1.10", "orders-db.postgres.database.azure.com", "A"},
	} {
		out := kdig(args...)
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "orders-db.contoso.private.postgres.database.azure.com.") || !strings.Contains(out, "127.0.1.4") {
			t.Errorf("kdig %s:\n%s", strings.Join(args, " "), out)
		}
	}
	// 31 NS names of about 50 bytes do not fit in 512 bytes.
	udp := digIn(t, ns, "@"+labResolver, "+noedns", "+ignore", "postgres.database.azure.com", "NS")
	if !udp.hasFlag("tc") {
		t.Fatalf("a large answer over UDP without EDNS must be truncated:\n%s", udp.out)
	}
	whole := digIn(t, ns, "@"+labResolver, "+noedns", "postgres.database.azure.com", "NS") // dig retries over TCP
	if whole.hasFlag("tc") || strings.Count(whole.out, "\tNS\t") != len(many)+1 {
		t.Fatalf("over TCP the answer must be whole (%d NS):\n%s", len(many)+1, whole.out)
	}
	if out := kdig("+tcp", "postgres.database.azure.com", "NS"); strings.Count(out, "\tNS\t") != len(many)+1 {
		t.Fatalf("kdig +tcp must get every NS:\n%s", out)
	}
}
