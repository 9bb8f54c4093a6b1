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
// and zones (shareNames) and move, in t's server list, to compact copies.
func settle(t *Topology, d decoded) {
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
	copies := compactServers(d.servers)
	all := t.Servers.Slice()
	j := 0
	for i, s := range all {
		if j < len(d.servers) && s == d.servers[j] {
			all[i] = copies[j]
			j++
		}
	}
	t.Servers = NewServerList(all...)
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

// compactor copies the strings, string lists and subnets of topology items
// in two passes over the same items: the first measures them, the second
// moves each into one string, one []string and one []Subnet.
type compactor struct {
	pass  int
	b     strings.Builder // pass 0: every string, in order
	arena string          // pass 1: b's text, handed out in the same order
	at    int
	nstrs int
	strs  []string
	nsubs int
	subs  []Subnet
}

// start ends the measuring pass and allocates what the copies go to.
func (c *compactor) start() {
	c.arena = c.b.String()
	c.strs = make([]string, 0, c.nstrs)
	c.subs = make([]Subnet, 0, c.nsubs)
}

func (c *compactor) str(p *string) {
	if c.pass == 0 {
		c.b.WriteString(*p)
		return
	}
	*p = c.arena[c.at : c.at+len(*p)]
	c.at += len(*p)
}

// list copies a list of strings; a nil or empty list stays as it is.
func (c *compactor) list(p *[]string) {
	if len(*p) == 0 {
		return
	}
	if c.pass == 0 {
		c.nstrs += len(*p)
		for _, s := range *p {
			c.b.WriteString(s)
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

// compactServers returns copies of servers allocated together: the Server
// values in one slice, their Network and Addresses values in one each, their
// firewall rules in one, and the strings only a server holds (its name,
// addresses, backends and rules' fields) in one string. A slab stays in
// memory while any server in it does: a server edited in the file and
// re-decoded leaves its old copy there until the file's other servers in
// it go too.
func compactServers(servers []*Server) []*Server {
	var nets, addrs, rules, size int
	for _, s := range servers {
		size += len(s.Name) + len(s.Backends.Primary) + len(s.Backends.Standby)
		if s.Network != nil {
			nets++
		}
		if a := s.Addresses; a != nil {
			addrs++
			size += len(a.Primary) + len(a.Standby)
		}
		rules += len(s.FirewallRules)
		for _, r := range s.FirewallRules {
			size += len(r.Name) + len(r.StartIPAddress) + len(r.EndIPAddress)
		}
	}
	var b strings.Builder
	b.Grow(size)
	for _, s := range servers {
		b.WriteString(s.Name)
		b.WriteString(s.Backends.Primary)
		b.WriteString(s.Backends.Standby)
		if a := s.Addresses; a != nil {
			b.WriteString(a.Primary)
			b.WriteString(a.Standby)
		}
		for _, r := range s.FirewallRules {
			b.WriteString(r.Name)
			b.WriteString(r.StartIPAddress)
			b.WriteString(r.EndIPAddress)
		}
	}
	arena, at := b.String(), 0
	// next returns the arena's copy of v: the strings are taken back
	// in the order they were written.
	next := func(v string) string {
		c := arena[at : at+len(v)]
		at += len(v)
		return c
	}
	slab := make([]Server, len(servers))
	netSlab := make([]Network, 0, nets)
	addrSlab := make([]Addresses, 0, addrs)
	ruleSlab := make([]FirewallRule, 0, rules)
	out := make([]*Server, len(servers))
	for i, s := range servers {
		c := &slab[i]
		*c = *s
		c.Name = next(s.Name)
		c.Backends = Backends{Primary: next(s.Backends.Primary), Standby: next(s.Backends.Standby)}
		if s.Network != nil {
			netSlab = append(netSlab, *s.Network)
			c.Network = &netSlab[len(netSlab)-1]
		}
		if a := s.Addresses; a != nil {
			addrSlab = append(addrSlab, Addresses{Primary: next(a.Primary), Standby: next(a.Standby)})
			c.Addresses = &addrSlab[len(addrSlab)-1]
		}
		if len(s.FirewallRules) > 0 {
			from := len(ruleSlab)
			for _, r := range s.FirewallRules {
				ruleSlab = append(ruleSlab, FirewallRule{Name: next(r.Name), StartIPAddress: next(r.StartIPAddress), EndIPAddress: next(r.EndIPAddress)})
			}
			c.FirewallRules = ruleSlab[from:len(ruleSlab):len(ruleSlab)]
		}
		out[i] = c
	}
	return out
}
