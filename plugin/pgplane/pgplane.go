// Package pgplane is the CoreDNS plugin of pgplane: it answers for
// postgres.database.azure.com from the current topology snapshot, in the view
// of the client's VNet. Its setup turns the Corefile's pgplane block into
// the options of the appliance (package appliance), which owns the desired
// state and runs the gateway, the cluster node and the admin API beside the
// DNS server.
package pgplane

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/pgplane/pgplane/appliance"

	"github.com/miekg/dns"
)

// PGPlane is the plugin handler. Queries read the current answers with one
// atomic load; a reload builds new answers and swaps them in.
type PGPlane struct {
	Next plugin.Handler

	opts    options
	answers atomic.Pointer[answers]
	app     *appliance.Appliance // the engine: desired state, gateway, cluster, admin API
}

// ServeDNS implements the plugin.Handler interface.
func (p *PGPlane) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	qname := state.Name()
	if !inZone(qname) {
		return plugin.NextOrFailure(p.Name(), p.Next, ctx, w, r)
	}
	qtype := state.QType()
	if qtype == dns.TypeAXFR || qtype == dns.TypeIXFR {
		return dns.RcodeRefused, nil
	}
	a := p.answers.Load()
	view := a.snap.ViewOf(addrOf(w.LocalAddr()), addrOf(w.RemoteAddr()))
	answer, authority, rcode := a.lookup(qname, qtype, view)
	a.count(view, rcode)

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Rcode = rcode
	m.Answer, m.Ns = answer, authority
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

// Name implements the plugin.Handler interface.
func (p *PGPlane) Name() string { return "pgplane" }

// addrOf returns the IP address of a UDP or TCP address without allocating.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
