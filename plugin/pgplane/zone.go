package pgplane

import (
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/pgplane/pgplane/topology"

	"github.com/miekg/dns"
)

// apexFQDN is the zone pgplane is authoritative for, as a DNS name.
const apexFQDN = topology.Apex + "."

// answers holds every record of one topology snapshot, built once when the
// snapshot is swapped in so that a query allocates no records. The records are
// shared by all queries and must not be changed.
type answers struct {
	snap   *topology.Snapshot
	soa    *dns.SOA // for SOA queries
	soaNeg *dns.SOA // for negative answers: TTL is the negative-caching time (D7)
	ns     []dns.RR
	// names are the public names other than servers': the apex, the
	// gateway names and the control empty non-terminal. Keys are lowercase
	// FQDNs. A server's name is answered from the snapshot's server index
	// when it is asked (alias): a record per server held here would double
	// what a server costs in memory.
	names map[string]*entry
	// gateways are the regions' gateway names as FQDNs, the CNAME targets
	// of public servers, by topology.RegionInfo.GatewayName.
	gateways map[string]string
	ttl      uint32 // of CNAMEs and private records (options.ttl)
	// zones are the private zones by lowercase FQDN of their apex.
	zones map[string]*privateZone
	// ents are the names between the apex and a private zone; they exist
	// (NODATA) only for views linked to one of those zones.
	ents map[string][]*privateZone
	// counters count answers by view: index 0 is the public view, i+1 is
	// VNet i; nil until the view first answers.
	counters []atomic.Pointer[viewCounters]
}

type entryKind uint8

const (
	kindApex entryKind = iota
	kindAddress
	kindEmpty
)

// entry is a public name other than a server's.
type entry struct {
	kind entryKind
	rr   dns.RR // the A of a gateway name
}

// privateZone is a private DNS zone, visible to linked views only. Its
// records are its servers' (Snapshot.ZoneRecord), made into A records when asked;
// its SOA and NS records are made when first asked (made with the zone,
// they took about 350 bytes a zone whether anyone asked or not).
type privateZone struct {
	info   *topology.ZoneInfo
	apex   string
	serial uint32
	opts   *options
	apexRR atomic.Pointer[zoneApex]
}

// zoneApex are a private zone's SOA and NS records.
type zoneApex struct {
	soa, soaNeg *dns.SOA
	ns          []dns.RR // the apex's NS: in the views that see it, it is a zone of its own
}

// records returns the zone's SOA and NS records, making them on first use.
// Two first uses at once make them twice, equal: either is kept.
func (pz *privateZone) records() *zoneApex {
	if r := pz.apexRR.Load(); r != nil {
		return r
	}
	r := &zoneApex{}
	r.soa, r.soaNeg = soaPair(pz.apex, "azureprivatedns.net.", "azureprivatedns-host.microsoft.com.", pz.serial, *pz.opts)
	for _, n := range pz.opts.ns {
		r.ns = append(r.ns, &dns.NS{Hdr: header(pz.apex, dns.TypeNS, 3600), Ns: n})
	}
	pz.apexRR.Store(r)
	return r
}

// options are the Corefile settings that shape answers.
type options struct {
	ttl uint32   // records that can flip, CNAMEs and negative answers (D9)
	ns  []string // NS names of the apex, FQDNs
}

// newAnswers builds the records of a snapshot.
func newAnswers(s *topology.Snapshot, o options) *answers {
	a := &answers{
		snap:     s,
		zones:    make(map[string]*privateZone, len(s.Zones)),
		ents:     map[string][]*privateZone{},
		names:    make(map[string]*entry, len(s.Regions)+2),
		gateways: make(map[string]string, len(s.Regions)),
		ttl:      o.ttl,
	}
	a.counters = make([]atomic.Pointer[viewCounters], len(s.VNets)+1)
	a.soa, a.soaNeg = apexSOAs(s.Serial, o)
	for _, n := range o.ns {
		a.ns = append(a.ns, &dns.NS{Hdr: header(apexFQDN, dns.TypeNS, 3600), Ns: n})
	}
	a.names[apexFQDN] = &entry{kind: kindApex}
	a.names[topology.ControlLabel+"."+apexFQDN] = &entry{kind: kindEmpty}
	for _, r := range s.Regions {
		name := r.GatewayName + "."
		a.names[name] = gatewayEntry(r, o.ttl)
		a.gateways[r.GatewayName] = name
	}
	for _, z := range s.Zones {
		pz := newPrivateZone(z, s.Serial, &o)
		a.zones[pz.apex] = pz
		for ent := parentName(pz.apex); ent != apexFQDN && ent != ""; ent = parentName(ent) {
			a.ents[ent] = append(a.ents[ent], pz)
		}
	}
	return a
}

// gatewayEntry is a region's gateway name, answering its active address.
func gatewayEntry(r *topology.RegionInfo, ttl uint32) *entry {
	name := r.GatewayName + "."
	return &entry{kind: kindAddress, rr: &dns.A{Hdr: header(name, dns.TypeA, ttl), A: r.Active.AsSlice()}}
}

// newPrivateZone returns a private DNS zone whose SOA has serial; o
// outlives it (the answers' options).
func newPrivateZone(z *topology.ZoneInfo, serial uint32, o *options) *privateZone {
	return &privateZone{info: z, apex: z.Name + ".", serial: serial, opts: o}
}

// alias is the public name of a server, if qname (a lowercase FQDN inside
// the apex) is one: a CNAME to its region's gateway name or to its private
// zone's record, made from the server's entry in the snapshot.
func (a *answers) alias(qname string) (cname *dns.CNAME, target string) {
	label := qname[:max(0, len(qname)-len(apexFQDN)-1)]
	if label == "" || strings.IndexByte(label, '.') >= 0 {
		return nil, ""
	}
	srv := a.snap.Server(label)
	if srv == nil {
		return nil, ""
	}
	name := srv.CNAMETarget()
	target, ok := a.gateways[name] // a public server's: its region's, shared
	if !ok {
		target = name + "."
	}
	return &dns.CNAME{Hdr: header(qname, dns.TypeCNAME, a.ttl), Target: target}, target
}

// withServers returns the answers of s, which a change of servers alone
// or of the run-time state made from the snapshot of a (s.Change): the
// private zones whose records changed and the names of the regions whose
// gateway flipped are made again, and everything else is shared (servers'
// names are answered from s itself). A private zone keeps its SOA serial until
// its records change.
func (a *answers) withServers(s *topology.Snapshot, o options) *answers {
	next := *a
	next.snap = s
	next.soa, next.soaNeg = apexSOAs(s.Serial, o)
	if len(s.Change.Regions) > 0 {
		// A gateway flip: the region's name answers its new address.
		next.names = maps.Clone(a.names)
		for _, region := range s.Change.Regions {
			if r := s.Regions[region]; r != nil {
				next.names[r.GatewayName+"."] = gatewayEntry(r, o.ttl)
			}
		}
	}
	if len(s.Change.Zones) == 0 {
		return &next
	}
	next.zones, next.ents = maps.Clone(a.zones), maps.Clone(a.ents)
	for _, zone := range s.Change.Zones {
		z := s.Zones[zone]
		if z == nil {
			continue
		}
		pz := newPrivateZone(z, s.Serial, &o)
		was := next.zones[pz.apex]
		next.zones[pz.apex] = pz
		for ent := parentName(pz.apex); ent != apexFQDN && ent != ""; ent = parentName(ent) {
			list := slices.Clone(next.ents[ent])
			if i := slices.Index(list, was); i >= 0 {
				list[i] = pz
			}
			next.ents[ent] = list
		}
	}
	return &next
}

// lookup answers qname (a lowercase FQDN inside the apex) of type qtype in a
// view. It follows a CNAME to its target inside the apex (D2, D3) and sets the
// response code of the last name in the chain (RFC 6604).
func (a *answers) lookup(qname string, qtype uint16, view int) (answer, authority []dns.RR, rcode int) {
	if e, ok := a.names[qname]; ok {
		switch e.kind {
		case kindApex:
			switch qtype {
			case dns.TypeSOA:
				return []dns.RR{a.soa}, nil, dns.RcodeSuccess
			case dns.TypeNS:
				// A copy: later plugins (loadbalance) reorder answers in place.
				return slices.Clone(a.ns), nil, dns.RcodeSuccess
			}
		case kindAddress:
			if qtype == dns.TypeA || qtype == dns.TypeANY {
				return []dns.RR{e.rr}, nil, dns.RcodeSuccess
			}
		}
		return nil, []dns.RR{a.soaNeg}, dns.RcodeSuccess // NODATA (D7)
	}
	if cname, target := a.alias(qname); cname != nil {
		if qtype == dns.TypeCNAME {
			return []dns.RR{cname}, nil, dns.RcodeSuccess
		}
		chased, authority, rcode := a.lookup(target, qtype, view)
		answer = make([]dns.RR, 0, 1+len(chased))
		return append(append(answer, cname), chased...), authority, rcode
	}
	if pz := a.privateZone(qname, view); pz != nil {
		if qname == pz.apex && qtype == dns.TypeDS {
			// DS belongs to the parent side of a zone cut: no DS, and
			// the parent's SOA says so (RFC 4035 3.1.4.1).
			return nil, []dns.RR{a.soaNeg}, dns.RcodeSuccess
		}
		return pz.lookup(a.snap, qname, qtype, a.ttl)
	}
	for _, pz := range a.ents[qname] {
		if pz.info.LinkedTo(view) {
			return nil, []dns.RR{a.soaNeg}, dns.RcodeSuccess
		}
	}
	return nil, []dns.RR{a.soaNeg}, dns.RcodeNameError
}

// privateZone returns the most specific private zone holding qname that the
// view is linked to, or nil.
func (a *answers) privateZone(qname string, view int) *privateZone {
	if view == topology.PublicView || len(a.zones) == 0 {
		return nil
	}
	for name := qname; len(name) > len(apexFQDN); name = parentName(name) {
		if pz, ok := a.zones[name]; ok && pz.info.LinkedTo(view) {
			return pz
		}
	}
	return nil
}

func (pz *privateZone) lookup(snap *topology.Snapshot, qname string, qtype uint16, ttl uint32) (answer, authority []dns.RR, rcode int) {
	r := pz.records()
	if qname == pz.apex {
		switch qtype {
		case dns.TypeSOA:
			return []dns.RR{r.soa}, nil, dns.RcodeSuccess
		case dns.TypeNS:
			// A copy: later plugins (loadbalance) reorder answers in place.
			return slices.Clone(r.ns), nil, dns.RcodeSuccess
		}
		return nil, []dns.RR{r.soaNeg}, dns.RcodeSuccess
	}
	label := qname[:max(0, len(qname)-len(pz.apex)-1)]
	var srv *topology.ServerInfo
	if strings.IndexByte(label, '.') < 0 {
		srv = snap.ZoneRecord(pz.info, label)
	}
	switch {
	case srv == nil:
		return nil, []dns.RR{r.soaNeg}, dns.RcodeNameError
	case qtype == dns.TypeA || qtype == dns.TypeANY:
		return []dns.RR{&dns.A{Hdr: header(qname, dns.TypeA, ttl), A: srv.Address.AsSlice()}}, nil, dns.RcodeSuccess
	}
	return nil, []dns.RR{r.soaNeg}, dns.RcodeSuccess
}

// inZone reports whether a lowercase FQDN is the apex or below it.
func inZone(qname string) bool {
	return strings.HasSuffix(qname, apexFQDN) &&
		(len(qname) == len(apexFQDN) || qname[len(qname)-len(apexFQDN)-1] == '.')
}

// parentName drops the first label of an FQDN: "a.b." -> "b.".
func parentName(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		return name[i+1:]
	}
	return ""
}

func header(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// apexSOAs are the apex's SOA records of a serial (soaPair).
func apexSOAs(serial uint32, o options) (soa, soaNeg *dns.SOA) {
	return soaPair(apexFQDN, o.ns[0], "hostmaster."+apexFQDN, serial, o)
}

// soaPair is a zone's SOA as answered to an SOA query (TTL 3600) and as
// carried by negative answers (TTL the negative-caching time, D7); both
// have the negative-caching time as their minimum.
func soaPair(zone, mname, rname string, serial uint32, o options) (soa, soaNeg *dns.SOA) {
	return newSOA(zone, mname, rname, serial, 3600, o.ttl), newSOA(zone, mname, rname, serial, o.ttl, o.ttl)
}

func newSOA(zone, mname, rname string, serial, ttl, minttl uint32) *dns.SOA {
	return &dns.SOA{Hdr: header(zone, dns.TypeSOA, ttl), Ns: mname, Mbox: rname,
		Serial: serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minttl}
}
