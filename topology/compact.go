package topology

import "strings"

// Decoding a file interleaves what the topology keeps (servers, VNets,
// zones, and their strings and lists) with many times as much garbage (YAML
// nodes), so after a collection a large topology lies scattered over mostly
// empty heap pages that stay resident: 2.2 MB beyond 7.5 MB live at 10,000
// servers. The helpers here copy what a parse decoded into memory of its
// own, allocated together and sized to fit, so that the pages the decoding
// used are given back whole.

// decoded says what a parse decoded anew, in t's order: the parts a
// Parser reused from the file before are left where they are.
type decoded struct {
	servers []*Server
	items   []decodedItem
}

// decodedItem is an item decoded anew of a section other than servers:
// the item at index at of the section's list, or the whole section (at -1).
type decodedItem struct {
	section string
	at      int
}

// settle compacts what a parse decoded into t: the sections' items first,
// then the servers, which share the names of t's regions, VNets, subnets
// and zones (shareNames) and move, in t's server list and in d, to compact
// copies.
func settle(t *Topology, d *decoded) {
	if len(d.items) > 0 {
		c := &compactor{}
		for c.pass = 0; c.pass < 2; c.pass++ {
			if c.pass == 1 {
				c.start()
			}
			for _, it := range d.items {
				c.item(t, it)
			}
		}
	}
	if len(d.servers) == 0 {
		return
	}
	shareNames(t, d.servers)
	copies := make([]*Server, len(d.servers))
	c := &compactor{}
	for c.pass = 0; c.pass < 2; c.pass++ {
		if c.pass == 1 {
			c.start()
		}
		for i, s := range d.servers {
			copies[i] = c.server(s)
		}
	}
	all := t.Servers.Slice()
	j := 0
	for i, s := range all {
		if j < len(d.servers) && s == d.servers[j] {
			all[i] = copies[j]
			j++
		}
	}
	t.Servers = NewServerList(all...)
	d.servers = copies
}

// note records a part decoded anew, filed in its section as pt says.
func (d *decoded) note(section string, pt part, c chunk) {
	switch {
	case c.null:
	case c.value.Type() == serverType:
		d.servers = append(d.servers, c.value.Interface().(*Server))
	case c.value.Type() == serverListType:
		d.servers = append(d.servers, c.value.Interface().(ServerList).Slice()...)
	case pt.item:
		d.items = append(d.items, decodedItem{section, int(pt.at)})
	default:
		d.items = append(d.items, decodedItem{section, -1})
	}
}

// everything is what Parse decodes: all of t.
func everything(t *Topology) decoded {
	return decoded{servers: t.Servers.Slice(), items: []decodedItem{{"datacenterRanges", -1}, {"regions", -1}, {"vnets", -1}, {"privateDnsZones", -1}}}
}

// compactor copies topology items or servers in two passes over the same
// values: the first measures them, the second moves them into memory sized
// to fit: their strings into one string, their lists of strings, subnets,
// servers, networks, addresses and firewall rules into one slice each. The
// memory stays while any value in it does: a server edited in the file and
// decoded again leaves its old copy there until the others in it go too.
type compactor struct {
	pass int
	size int             // pass 0: the strings' bytes
	b    strings.Builder // pass 1: grown to size once, so never moved

	nstrs, nsubs, nservers, nnets, naddrs, nrules int

	strs    []string
	subs    []Subnet
	servers []Server
	nets    []Network
	addrs   []Addresses
	rules   []FirewallRule
}

// start ends the measuring pass and allocates what the copies go to.
func (c *compactor) start() {
	c.b.Grow(c.size)
	c.strs = make([]string, 0, c.nstrs)
	c.subs = make([]Subnet, 0, c.nsubs)
	c.servers = make([]Server, 0, c.nservers)
	c.nets = make([]Network, 0, c.nnets)
	c.addrs = make([]Addresses, 0, c.naddrs)
	c.rules = make([]FirewallRule, 0, c.nrules)
}

// str copies a string. The builder holds exactly the measured bytes, so
// it never grows again and every copy shares its one buffer (a Builder
// appends only: what String returned earlier stays as it was).
func (c *compactor) str(p *string) {
	if c.pass == 0 {
		c.size += len(*p)
		return
	}
	at := c.b.Len()
	c.b.WriteString(*p)
	*p = c.b.String()[at:]
}

// list copies a list of strings; a nil or empty list stays as it is.
func (c *compactor) list(p *[]string) {
	if len(*p) == 0 {
		return
	}
	if c.pass == 0 {
		c.nstrs += len(*p)
		for i := range *p {
			c.str(&(*p)[i])
		}
		return
	}
	from := len(c.strs)
	for _, s := range *p {
		c.strs = append(c.strs, s)
		c.str(&c.strs[len(c.strs)-1])
	}
	*p = c.strs[from:len(c.strs):len(c.strs)]
}

func (c *compactor) subnets(p *[]Subnet) {
	if len(*p) == 0 {
		return
	}
	if c.pass == 0 {
		c.nsubs += len(*p)
		for i := range *p {
			c.subnet(&(*p)[i])
		}
		return
	}
	from := len(c.subs)
	for _, sn := range *p {
		c.subs = append(c.subs, sn)
		c.subnet(&c.subs[len(c.subs)-1])
	}
	*p = c.subs[from:len(c.subs):len(c.subs)]
}

func (c *compactor) subnet(sn *Subnet) {
	c.str(&sn.Name)
	c.str(&sn.CIDR)
	c.str(&sn.Delegation)
}

func (c *compactor) region(r *Region) {
	c.str(&r.Name)
	c.list((*[]string)(&r.Gateways))
}

func (c *compactor) vnet(v *VNet) {
	c.str(&v.Name)
	c.str(&v.Region)
	c.list(&v.AddressSpaces)
	c.str(&v.ResolverAddress)
	c.list(&v.Peerings)
	c.list(&v.DNSServers)
	c.subnets(&v.Subnets)
}

func (c *compactor) zone(z *PrivateDNSZone) {
	c.str(&z.Name)
	c.list(&z.Links)
	c.str(&z.Lock)
}

// item copies one decoded item (or section) of t. Pass 0 reads only.
func (c *compactor) item(t *Topology, it decodedItem) {
	each := func(n int, f func(int)) {
		if it.at >= 0 {
			f(it.at)
			return
		}
		for i := range n {
			f(i)
		}
	}
	switch it.section {
	case "datacenterRanges":
		if it.at < 0 {
			c.list(&t.DatacenterRanges)
		} else {
			c.str(&t.DatacenterRanges[it.at])
		}
	case "regions":
		each(len(t.Regions), func(i int) { c.region(&t.Regions[i]) })
	case "vnets":
		each(len(t.VNets), func(i int) { c.vnet(&t.VNets[i]) })
	case "privateDnsZones":
		each(len(t.PrivateDNSZones), func(i int) { c.zone(&t.PrivateDNSZones[i]) })
	}
}

// server copies a server: in pass 0 it only measures it and returns it,
// in pass 1 it returns its copy. Network's names are not copied: they are
// the topology's own (shareNames).
func (c *compactor) server(s *Server) *Server {
	if c.pass == 0 {
		c.nservers++
		if s.Network != nil {
			c.nnets++
		}
		if s.Addresses != nil {
			c.naddrs++
		}
		c.nrules += len(s.FirewallRules)
	} else {
		c.servers = append(c.servers, *s)
		s = &c.servers[len(c.servers)-1]
		if s.Network != nil {
			c.nets = append(c.nets, *s.Network)
			s.Network = &c.nets[len(c.nets)-1]
		}
		if s.Addresses != nil {
			c.addrs = append(c.addrs, *s.Addresses)
			s.Addresses = &c.addrs[len(c.addrs)-1]
		}
		if len(s.FirewallRules) > 0 {
			from := len(c.rules)
			c.rules = append(c.rules, s.FirewallRules...)
			s.FirewallRules = c.rules[from:len(c.rules):len(c.rules)]
		}
	}
	c.str(&s.Name)
	c.str(&s.Backends.Primary)
	c.str(&s.Backends.Standby)
	if a := s.Addresses; a != nil {
		c.str(&a.Primary)
		c.str(&a.Standby)
	}
	for i := range s.FirewallRules {
		r := &s.FirewallRules[i]
		c.str(&r.Name)
		c.str(&r.StartIPAddress)
		c.str(&r.EndIPAddress)
	}
	return s
}
