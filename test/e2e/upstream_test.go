package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestNamesOutsideTheZoneAreForwarded: an appliance that stands in for
// 168.63.129.16 resolves every other name through its upstream (here a
// second CoreDNS process serving example.com from its hosts plugin, on
// loopback), in every view, while postgres.database.azure.com stays its
// own.
// SPEC: D6 D1
func TestNamesOutsideTheZoneAreForwarded(t *testing.T) {
	upDir := t.TempDir()
	upPort := freePort(t, "127.0.0.1")
	startNode(t, upDir, fmt.Sprintf(`example.com:%d {
    bind 127.0.0.1
    hosts {
        192.0.2.10 www.example.com
    }
}
`, upPort), fmt.Sprintf("127.0.0.1:%d", upPort), "")
	_, port := devNode(t, "", fmt.Sprintf("forward . 127.0.0.1:%d", upPort))
	for _, src := range []string{"127.0.0.1", "127.0.1.10"} { // outside every VNet, and in app-vnet
		r := dig(t, args(port, "-b", src, "www.example.com", "A")...)
		if r.status != "NOERROR" || len(r.answer) != 1 || !strings.HasSuffix(r.answer[0], " A 192.0.2.10") {
			t.Fatalf("from %s, a name outside the zone must be resolved upstream:\n%s", src, r.out)
		}
	}
	r := dig(t, args(port, "-b", "127.0.1.10", "orders-db.postgres.database.azure.com", "A")...)
	if len(r.answer) == 0 || !strings.HasSuffix(r.answer[len(r.answer)-1], " A 127.0.1.4") {
		t.Fatalf("the zone's own names are still answered by pgplane:\n%s", r.out)
	}
	// Without an upstream (the dev Corefile) a name outside the zone gets
	// SERVFAIL, as the README says.
	_, devPort := devNode(t, "", "")
	if r := dig(t, args(devPort, "www.example.com", "A")...); r.status != "SERVFAIL" {
		t.Fatalf("without forward, want SERVFAIL:\n%s", r.out)
	}
}
