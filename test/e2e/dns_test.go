package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	publicName  = "reports-db.postgres.database.azure.com."
	privateName = "orders-db.postgres.database.azure.com."
	privateRec  = "orders-db.contoso.private.postgres.database.azure.com."
	gatewayName = "eastus2.control.postgres.database.azure.com."
	apex        = "postgres.database.azure.com."
	zone        = "contoso.private.postgres.database.azure.com."
)

var (
	publicCNAME  = publicName + " 5 IN CNAME " + gatewayName
	gatewayA     = gatewayName + " 5 IN A 127.0.0.1"
	privateCNAME = privateName + " 5 IN CNAME " + privateRec
	privateA     = privateRec + " 5 IN A 127.0.1.4"
)

// devTopology is the dev appliance's topology file, which these tests use.
func devTopology(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../corefile/dev/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// devNode starts an appliance with the dev topology on a free port, bound to
// 127.0.0.1 and app-vnet's resolver address 127.0.1.250. block is added to
// the pgplane block; after is added after the pgplane line.
func devNode(t *testing.T, block, after string) (*node, int) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "topology.yaml", devTopology(t))
	port := freePort(t, "127.0.0.1", "127.0.1.250")
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1 127.0.1.250
    pgplane topology.yaml {
        reload 100ms
        %s
    }
    %s
    log
    errors
}
`, port, block, after)
	return startNode(t, dir, corefile, fmt.Sprintf("127.0.0.1:%d", port), ""), port
}

func at(port int) []string { return []string{"@127.0.0.1", "-p", fmt.Sprint(port)} }

func args(port int, rest ...string) []string { return append(at(port), rest...) }

// SPEC: D1 D2
func TestPublicChain(t *testing.T) {
	_, port := devNode(t, "", "")
	for _, transport := range []string{"+notcp", "+tcp"} {
		r := dig(t, args(port, transport, publicName, "A")...)
		r.expect(t, "NOERROR", publicCNAME, gatewayA)
	}
	// Names are matched case-insensitively.
	r := dig(t, args(port, "RePorts-DB.Postgres.Database.Azure.COM", "A")...)
	if r.status != "NOERROR" || len(r.answer) != 2 || !strings.HasSuffix(r.answer[1], " A 127.0.0.1") {
		t.Fatalf("mixed-case query:\n%s", r.out)
	}
	// The gateway name alone: one A record, the active address (T1).
	dig(t, args(port, gatewayName, "A")...).expect(t, "NOERROR", gatewayA)
}

// SPEC: D1
func TestApexSOAAndNS(t *testing.T) {
	_, port := devNode(t, "ns ns1.example.net ns2.example.net", "")
	r := dig(t, args(port, apex, "NS")...)
	r.expect(t, "NOERROR", apex+" 3600 IN NS ns1.example.net.", apex+" 3600 IN NS ns2.example.net.")
	r = dig(t, args(port, apex, "SOA")...)
	if r.status != "NOERROR" || len(r.answer) != 1 || !strings.Contains(r.answer[0], "SOA ns1.example.net. hostmaster.postgres.database.azure.com.") {
		t.Fatalf("SOA:\n%s", r.out)
	}
}

// SPEC: D3 D4
func TestPrivateChainFromLinkedVNet(t *testing.T) {
	_, port := devNode(t, "", "")
	for _, transport := range []string{"+notcp", "+tcp"} {
		r := dig(t, args(port, transport, "-b", "127.0.1.10", privateName, "A")...)
		r.expect(t, "NOERROR", privateCNAME, privateA)
	}
	// The private record itself, asked directly from the linked VNet.
	dig(t, args(port, "-b", "127.0.1.10", privateRec, "A")...).expect(t, "NOERROR", privateA)
	// The zone's apex exists for the linked VNet, with Azure's private SOA.
	r := dig(t, args(port, "-b", "127.0.1.10", zone, "SOA")...)
	if r.status != "NOERROR" || len(r.answer) != 1 || !strings.Contains(r.answer[0], "azureprivatedns.net.") {
		t.Fatalf("private zone SOA:\n%s", r.out)
	}
}

// SPEC: D4
func TestResolverAddressGivesItsVNetView(t *testing.T) {
	_, port := devNode(t, "", "")
	// Sent from 127.0.0.1 (no VNet) to app-vnet's own resolver address.
	r := dig(t, "@127.0.1.250", "-p", fmt.Sprint(port), "-b", "127.0.0.1", privateName, "A")
	r.expect(t, "NOERROR", privateCNAME, privateA)
}

// SPEC: D3 D5 D7
func TestPrivateNameElsewhereIsNXDOMAIN(t *testing.T) {
	_, port := devNode(t, "", "")
	for _, who := range []struct{ name, source string }{
		{"peered but unlinked vnet", "127.0.2.10"},
		{"outside every vnet", "127.0.0.1"},
	} {
		t.Run(who.name, func(t *testing.T) {
			r := dig(t, args(port, "-b", who.source, privateName, "A")...)
			r.expect(t, "NXDOMAIN", privateCNAME)
			r.expectSOA(t, apex)
			r = dig(t, args(port, "-b", who.source, privateRec, "A")...)
			r.expect(t, "NXDOMAIN")
			r.expectSOA(t, apex)
		})
	}
}

// SPEC: D5 D9
func TestLinkAddedWhileRunning(t *testing.T) {
	n, port := devNode(t, "", "")
	dig(t, args(port, "-b", "127.0.2.10", privateName, "A")...).expect(t, "NXDOMAIN", privateCNAME)
	linked := strings.Replace(devTopology(t), "links: [app-vnet, custom-vnet]", "links: [app-vnet, custom-vnet, hub-vnet]", 1)
	writeFile(t, n.dir, "topology.yaml", linked)
	waitFor(t, "hub-vnet to see the private record", 10*time.Second, func() bool {
		return dig(t, args(port, "-b", "127.0.2.10", privateName, "A")...).status == "NOERROR"
	})
	dig(t, args(port, "-b", "127.0.2.10", privateName, "A")...).expect(t, "NOERROR", privateCNAME, privateA)
}

// SPEC: D7
func TestNegativeAnswersCarrySOA(t *testing.T) {
	_, port := devNode(t, "", "")
	// AAAA of a server: the CNAME, then NODATA for the target, with the SOA.
	r := dig(t, args(port, publicName, "AAAA")...)
	r.expect(t, "NOERROR", publicCNAME)
	r.expectSOA(t, apex)
	r = dig(t, args(port, "-b", "127.0.1.10", privateName, "AAAA")...)
	r.expect(t, "NOERROR", privateCNAME)
	r.expectSOA(t, zone)
	// A name that exists without the asked type is NODATA, not NXDOMAIN.
	r = dig(t, args(port, gatewayName, "TXT")...)
	r.expect(t, "NOERROR")
	r.expectSOA(t, apex)
	// The empty non-terminal above the gateway names exists.
	r = dig(t, args(port, "control."+apex, "A")...)
	r.expect(t, "NOERROR")
	// A name that does not exist.
	r = dig(t, args(port, "no-such-server."+apex, "A")...)
	r.expect(t, "NXDOMAIN")
	r.expectSOA(t, apex)
	if !strings.HasSuffix(r.authority[0], " 5") {
		t.Fatalf("the SOA minimum is the negative TTL, 5 s by default: %q", r.authority[0])
	}
}

// SPEC: D9
func TestTTLIsConfigurable(t *testing.T) {
	_, port := devNode(t, "ttl 2", "")
	r := dig(t, args(port, publicName, "A")...)
	r.expect(t, "NOERROR", strings.Replace(publicCNAME, " 5 ", " 2 ", 1), strings.Replace(gatewayA, " 5 ", " 2 ", 1))
}

// SPEC: D1
func TestTruncationWithoutEDNS(t *testing.T) {
	var ns []string
	for i := 0; i < 20; i++ {
		ns = append(ns, fmt.Sprintf("ns.uncompressible-name-server-%02d.example%02d.net", i, i))
	}
	_, port := devNode(t, "ns "+strings.Join(ns, " "), "")
	r := dig(t, args(port, "+noedns", "+ignore", apex, "NS")...)
	if !r.hasFlag("tc") || !r.hasFlag("aa") {
		t.Fatalf("an answer over 512 bytes without EDNS0 must be truncated (tc):\n%s", r.out)
	}
	r = dig(t, args(port, "+bufsize=4096", apex, "NS")...)
	if r.hasFlag("tc") || len(r.answer) != 20 {
		t.Fatalf("with EDNS0 4096 all 20 NS records fit:\n%s", r.out)
	}
	if !strings.Contains(r.out, "EDNS: version: 0") {
		t.Fatalf("the reply must carry EDNS0:\n%s", r.out)
	}
	r = dig(t, args(port, "+noedns", apex, "NS")...) // dig retries over TCP on TC
	if r.hasFlag("tc") || len(r.answer) != 20 {
		t.Fatalf("over TCP all 20 NS records come:\n%s", r.out)
	}
}

// SPEC: D8
func TestNslookupDebugShowsCanonicalName(t *testing.T) {
	_, port := devNode(t, "", "")
	out, err := exec.Command("nslookup", "-debug", fmt.Sprintf("-port=%d", port), strings.TrimSuffix(publicName, "."), "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("nslookup: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"canonical name = " + gatewayName,
		"Name:\t" + strings.TrimSuffix(gatewayName, "."),
		"Address: 127.0.0.1",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("nslookup output lacks %q:\n%s", want, text)
		}
	}
}

// SPEC: D6
func TestCustomDNSServerForwardsToResolver(t *testing.T) {
	// An upstream for names outside the service's zones.
	upDir := t.TempDir()
	upPort := freePort(t)
	upstream := fmt.Sprintf(`example.com:%d {
    bind 127.0.0.1
    template IN A example.com {
        answer "{{ .Name }} 60 IN A 127.9.9.9"
    }
}
`, upPort)
	startUpstream(t, upDir, upstream, upPort)

	// The resolver: pgplane, then forward for everything else (D6).
	_, port := devNode(t, "", fmt.Sprintf("forward . 127.0.0.1:%d", upPort))

	// custom-vnet's DNS server: a second CoreDNS that forwards everything
	// to the resolver from its own VNet address.
	fwdDir := t.TempDir()
	fwdPort := freePort(t, "127.0.3.53")
	forwarder := fmt.Sprintf(`.:%d {
    bind 127.0.3.53
    forward . 127.0.0.1:%d {
        source_address 127.0.3.53
    }
}
`, fwdPort, port)
	startNode(t, fwdDir, forwarder, fmt.Sprintf("127.0.3.53:%d", fwdPort), "")

	// A client in custom-vnet asks its own DNS server.
	r := dig(t, "@127.0.3.53", "-p", fmt.Sprint(fwdPort), "-b", "127.0.3.10", privateName, "A")
	if r.status != "NOERROR" || strings.Join(r.answer, "\n") != privateCNAME+"\n"+privateA {
		t.Fatalf("via the custom DNS server:\n%s", r.out)
	}
	// Names outside the zones reach the upstream through the resolver.
	r = dig(t, "@127.0.3.53", "-p", fmt.Sprint(fwdPort), "-b", "127.0.3.10", "www.example.com", "A")
	if r.status != "NOERROR" || len(r.answer) != 1 || !strings.HasSuffix(r.answer[0], "A 127.9.9.9") {
		t.Fatalf("an outside name must be forwarded upstream:\n%s", r.out)
	}
}

// startUpstream starts a plain CoreDNS (the same binary) as an upstream.
func startUpstream(t *testing.T, dir, corefile string, port int) {
	t.Helper()
	n := startNodeNoProbe(t, dir, corefile)
	waitFor(t, "the upstream to answer", 10*time.Second, func() bool {
		m := new(dns.Msg)
		m.SetQuestion("probe.example.com.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(m, fmt.Sprintf("127.0.0.1:%d", port))
		return err == nil
	})
	_ = n
}

// SPEC: T6 D1
func TestBadTopologyIsRefusedAndOldKeepsServing(t *testing.T) {
	n, port := devNode(t, "", "")
	bad := strings.Replace(devTopology(t), "cidr: 127.0.1.0/28", "cidr: 127.0.1.0/29", 1)
	bad = strings.Replace(bad, "links: [app-vnet, custom-vnet]", "links: [app-vnet, custom-vnet, hub-vnet]", 1)
	writeFile(t, n.dir, "topology.yaml", bad)
	waitFor(t, "the refusal to be logged", 10*time.Second, func() bool {
		return strings.Contains(n.log.String(), "refused")
	})
	// The log is JSON lines: the rule's quotes are escaped.
	if !strings.Contains(n.log.String(), `T6: subnet \"db\" in vnet \"app-vnet\"`) {
		t.Fatalf("the log must name the rule and the object:\n%s", n.log.String())
	}
	// The link in the bad file did not take effect; the old answers serve.
	dig(t, args(port, "-b", "127.0.2.10", privateName, "A")...).expect(t, "NXDOMAIN", privateCNAME)
	dig(t, args(port, "-b", "127.0.1.10", privateName, "A")...).expect(t, "NOERROR", privateCNAME, privateA)
}

// SPEC: T2
func TestAccessModeChangeInFileIsRefused(t *testing.T) {
	n, port := devNode(t, "", "")
	changed := strings.Replace(devTopology(t), "access: public", "access: private", 1)
	writeFile(t, n.dir, "topology.yaml", changed)
	waitFor(t, "the refusal to be logged", 10*time.Second, func() bool {
		return strings.Contains(n.log.String(), "refused")
	})
	dig(t, args(port, publicName, "A")...).expect(t, "NOERROR", publicCNAME, gatewayA)
}

// SPEC: D1 D5
func TestNoQueryFailsDuringReloads(t *testing.T) {
	n, port := devNode(t, "", "")
	topo := devTopology(t)
	linked := strings.Replace(topo, "links: [app-vnet, custom-vnet]", "links: [app-vnet, custom-vnet, hub-vnet]", 1)
	var queries, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Timeout: time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := new(dns.Msg)
				m.SetQuestion(publicName, dns.TypeA)
				r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port))
				queries.Add(1)
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%v %v", err, r))
				}
			}
		}()
	}
	for i := 0; i < 10; i++ {
		text := topo
		if i%2 == 0 {
			text = linked
		}
		writeFile(t, n.dir, "topology.yaml", text)
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if got := strings.Count(n.log.String(), " loaded ("); got < 5 {
		t.Fatalf("want the topology reloaded at least 5 times, saw %d:\n%s", got, n.log.String())
	}
	if failures.Load() > 0 {
		t.Fatalf("%d of %d queries failed during reloads; first: %v", failures.Load(), queries.Load(), firstFailure.Load())
	}
	t.Logf("%d queries, %d reloads, no failure", queries.Load(), strings.Count(n.log.String(), " loaded ("))
}
