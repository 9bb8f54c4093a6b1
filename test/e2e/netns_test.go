package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// netns creates a network namespace with lo up and the given addresses on lo,
// and removes it when the test ends, whatever the outcome. The namespace has
// no other interface and no route but lo's own: nothing can leave it, and
// nothing is added to the host.
func netns(t *testing.T, addrs ...string) string {
	t.Helper()
	name := fmt.Sprintf("pgplane-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("removing namespace %s: %v\n%s", name, err, out)
		}
	})
	run("-n", name, "link", "set", "lo", "up")
	for _, a := range addrs {
		run("-n", name, "addr", "add", a+"/32", "dev", "lo")
	}
	return name
}

const azureTopology = `regions:
  - name: eastus2
    gateways: [10.0.0.4, 10.0.0.5]
vnets:
  - name: app-vnet
    region: eastus2
    addressSpaces: [10.0.0.0/16]
    peerings: [hub-vnet]
    dnsServers: [10.0.1.53]
    subnets:
      - {name: db, cidr: 10.0.2.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}
  - name: hub-vnet
    region: eastus2
    addressSpaces: [10.1.0.0/16]
privateDnsZones:
  - {name: contoso.private.postgres.database.azure.com, links: [app-vnet]}
servers:
  - name: orders-db
    region: eastus2
    access: private
    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}
    addresses: {primary: 10.0.2.4}
    backends: {primary: "10.0.2.4:5432"}
`

// SPEC: D6 D4 D5
func TestResolverAt168_63_129_16InNamespace(t *testing.T) {
	ns := netns(t, "168.63.129.16", "10.0.1.10", "10.0.1.53", "10.1.0.10")
	dir := t.TempDir()
	writeFile(t, dir, "topology.yaml", azureTopology)
	startNode(t, dir, `.:53 {
    bind 168.63.129.16
    pgplane topology.yaml
}
`, "", ns)
	fwdDir := t.TempDir()
	startNode(t, fwdDir, `.:53 {
    bind 10.0.1.53
    forward . 168.63.129.16 {
        source_address 10.0.1.53
    }
}
`, "", ns)
	waitFor(t, "the resolver and the custom DNS server to answer", 15*time.Second, func() bool {
		a, errA := digTry(ns, "@168.63.129.16", "postgres.database.azure.com.", "SOA")
		b, errB := digTry(ns, "@10.0.1.53", "postgres.database.azure.com.", "SOA")
		return errA == nil && errB == nil && a.status == "NOERROR" && b.status == "NOERROR"
	})
	cname := "orders-db.postgres.database.azure.com. 5 IN CNAME orders-db.contoso.private.postgres.database.azure.com."
	a := "orders-db.contoso.private.postgres.database.azure.com. 5 IN A 10.0.2.4"

	// A VM in app-vnet using Azure-provided DNS.
	digIn(t, ns, "@168.63.129.16", "-b", "10.0.1.10", "orders-db.postgres.database.azure.com", "A").expect(t, "NOERROR", cname, a)
	// A VM in app-vnet using its VNet's custom DNS server, which forwards to 168.63.129.16.
	r := digIn(t, ns, "@10.0.1.53", "-b", "10.0.1.10", "orders-db.postgres.database.azure.com", "A")
	if r.status != "NOERROR" || strings.Join(r.answer, "\n") != cname+"\n"+a {
		t.Fatalf("via the custom DNS server:\n%s", r.out)
	}
	// A VM in the peered, unlinked hub-vnet.
	digIn(t, ns, "@168.63.129.16", "-b", "10.1.0.10", "orders-db.postgres.database.azure.com", "A").expect(t, "NXDOMAIN", cname)
}
