package pgplane

import (
	"context"
	"testing"

	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary packets to the handler: whatever unpacks as a
// DNS message must be answered without a panic, in any view. SPEC: G8 D1
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"orders-db.postgres.database.azure.com.", dns.TypeA},
		{"reports-db.postgres.database.azure.com.", dns.TypeAAAA},
		{"postgres.database.azure.com.", dns.TypeSOA},
		{"x.contoso.private.postgres.database.azure.com.", dns.TypeTXT},
		{"private.postgres.database.azure.com.", dns.TypeANY},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b, byte(0))
		f.Add(b, byte(1))
	}
	p := newTestPlugin(f, topology.State{})
	remotes := []string{"127.0.0.1", "127.0.1.9", "127.0.2.9", "127.0.3.9"}
	f.Fuzz(func(t *testing.T, packet []byte, who byte) {
		m := new(dns.Msg)
		if err := m.Unpack(packet); err != nil || len(m.Question) == 0 {
			return
		}
		rec := dnstest.NewRecorder(&test.ResponseWriter{RemoteIP: remotes[int(who)%len(remotes)]})
		p.ServeDNS(context.Background(), rec, m)
		if rec.Msg != nil {
			if _, err := rec.Msg.Pack(); err != nil {
				t.Fatalf("the reply does not pack: %v", err)
			}
		}
	})
}
