// Package pgplane is the CoreDNS plugin of pgplane: it answers for
// postgres.database.azure.com from the current topology snapshot, in the view
// of the client's VNet, reloads the topology file when it changes, and runs
// the PostgreSQL gateway beside the DNS server.
package pgplane

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"

	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

var log = clog.NewWithPlugin("pgplane")

// newLogger returns the structured logger of a part of the appliance: JSON
// lines on stdout at info level and above.
func newLogger(part string) zerolog.Logger {
	return zerolog.New(os.Stdout).Level(zerolog.InfoLevel).With().Timestamp().Str("plugin", part).Logger()
}

// PGPlane is the plugin handler. Queries read the current answers with one
// atomic load; a reload builds new answers and swaps them in.
type PGPlane struct {
	Next plugin.Handler

	opts    options
	answers atomic.Pointer[answers]
	topo    *topologyFile

	gwOpts   gatewayOptions
	gateway  *gateway.Gateway // nil without a gateway line
	clOpts   clusterOptions
	cluster  *cluster.Node // nil without cluster_bind
	adOpts   adminOptions
	stOpts   stateOptions
	admin    *api.Server // nil without an admin line
	devTLS   string      // the dev certificate directory, in dev mode
	devNames []string    // the names the dev certificate in use covers
	base     string      // the directory relative paths start from
	started  atomic.Bool // OnStartup has started the gateway, cluster and admin API
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
