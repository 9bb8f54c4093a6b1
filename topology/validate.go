package topology

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// validServerName: 3 to 63 lowercase letters, digits and hyphens, starting
// and ending with a letter or digit.
func validServerName(s string) bool {
	return len(s) >= 3 && validLabel(s)
}

// validLabel: a lowercase DNS label of 1 to 63 letters, digits and hyphens,
// starting and ending with a letter or digit.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validObjectName: 1 to 80 letters, digits, '.', '_' or '-', starting with a
// letter or digit (VNet, subnet and firewall rule names).
func validObjectName(s string) bool {
	if len(s) == 0 || len(s) > 80 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// reservedSubnetNames are the subnet names Azure keeps for its own services (T8).
var reservedSubnetNames = []string{"AzureFirewallSubnet", "AzureFirewallManagementSubnet", "AzureBastionSubnet", "GatewaySubnet"}

// TLS protocol versions a server parameter may name, in order.
var tlsVersions = []string{"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}

// Validate checks every rule of SPEC.md that a topology must hold on its own
// (T1, T3–T9, T11, Z1, Z2, F1, F2, D4's overlap rule and the schema). It
// returns the violations and, separately, the warnings (D10's lock warning),
// both in the order of the file.
func Validate(t *Topology) (violations, warnings Violations) {
	v := learnFacts(t)
	v.servers()
	return v.out, v.warn
}

// ValidateNetwork is Validate's violations for a topology that differs from
// a valid one only in the named VNets (their region, address spaces,
// subnets and peerings) and private DNS zones (their lock and links), each
// maybe created or deleted: every rule but the servers' is checked on the
// whole topology (no server is read for them), and the servers' rules for
// the servers those objects hold (placed in one of the VNets, or with their
// record in one of the zones) and for a server whose name a zone's first
// label takes (Z2), all in the file's order. A server elsewhere breaks
// nothing: its rules read its own VNet and zone, the regions, and the
// zones' names, none of which changed. zones are canonical names.
func ValidateNetwork(t *Topology, vnets, zones map[string]bool) Violations {
	v := learnFacts(t)
	var check []int
	for from, chunk := range t.Servers.Chunks() {
		for i, s := range chunk {
			n := s.Network
			if n != nil && (vnets[n.VNet] || len(zones) > 0 && zones[CanonicalZone(n.PrivateDNSZone)]) || len(zones) > 0 && zones[s.Name+"."+Apex] {
				check = append(check, from+i)
			}
		}
	}
	v.checkServers(check)
	return v.out
}

// NetworkChanges returns the VNets and the private DNS zones (canonical
// names) a change touches when it changes those alone (a VNet, its subnets
// or peerings; a zone or its links), and whether it does.
func NetworkChanges(keys []string) (vnets, zones map[string]bool, ok bool) {
	vnets, zones = map[string]bool{}, map[string]bool{}
	for _, key := range keys {
		k, ok := ParseKey(key)
		switch {
		case !ok:
			return nil, nil, false
		case k.Kind == KindVNet && (k.ChildKind == "" || k.ChildKind == KindSubnet || k.ChildKind == KindPeering):
			vnets[k.Name] = true
		case k.Kind == KindZone && (k.ChildKind == "" || k.ChildKind == KindLink):
			zones[CanonicalZone(k.Name)] = true
		default:
			return nil, nil, false
		}
	}
	return vnets, zones, len(vnets)+len(zones) > 0
}

// learnFacts checks everything but the servers and returns the validator
// with what it learned of the regions, VNets and zones.
func learnFacts(t *Topology) *validator {
	v := &validator{topo: t}
	v.datacenterRanges()
	v.regions()
	v.vnets()
	v.zones()
	return v
}

// Checker checks changes of servers alone (ValidateServers) at the cost of
// what they touch: it keeps what validation learned of the regions, VNets
// and private DNS zones, which such changes share with the topology before
// them, and learns it again only when those change. A Checker is not safe
// for concurrent use.
type Checker struct {
	regions []Region
	vnets   []VNet
	zones   []PrivateDNSZone
	ranges  []string
	facts   *validator // facts of the above; its violations are the topology's own
}

// ValidateServers is Validate for a topology that differs from a valid one
// only in the named servers (changed, added or deleted): it returns the
// violations Validate would. Every rule a server can break on its own or
// with others is checked: the named servers' own rules, Z2 and T4 against
// the zones and regions, and T7, T11 and address clashes against every
// server of their subnets, in the file's order. Servers elsewhere break
// nothing they did not break before, and the topology before broke nothing.
func (c *Checker) ValidateServers(d *ServerDelta) Violations {
	violations, _ := c.ValidateServersWarning(d)
	return violations
}

// ValidateServersWarning is ValidateServers that also returns the warnings
// Validate gives the servers it checks (D10).
func (c *Checker) ValidateServersWarning(d *ServerDelta) (violations, warnings Violations) {
	t := d.Topology
	if c.facts == nil || !sameSlice(c.regions, t.Regions) || !sameSlice(c.vnets, t.VNets) || !sameSlice(c.zones, t.PrivateDNSZones) || !sameSlice(c.ranges, t.DatacenterRanges) {
		c.regions, c.vnets, c.zones, c.ranges, c.facts = t.Regions, t.VNets, t.PrivateDNSZones, t.DatacenterRanges, learnFacts(t)
	}
	type subnetKey struct{ vnet, subnet string }
	var subnets []subnetKey
	for _, s := range d.After {
		if s != nil && s.Network != nil && !slices.Contains(subnets, subnetKey{s.Network.VNet, s.Network.Subnet}) {
			subnets = append(subnets, subnetKey{s.Network.VNet, s.Network.Subnet})
		}
	}
	// The servers to check, in the file's order: the changed ones and
	// every server of their subnets. A change names a few servers, placed
	// in t as d.After's pointers: comparing pointers finds them faster
	// than comparing or hashing every name.
	changed := make([]*Server, 0, len(d.Names))
	for _, n := range d.Names {
		if s := d.After[n]; s != nil {
			changed = append(changed, s)
		}
	}
	var check []int
	if d.From != nil && d.FilePos != nil {
		// The changed servers and the others of their subnets, by the
		// index of the snapshot the change was made from.
		servers := slices.Clone(changed)
		for _, k := range subnets {
			for _, name := range d.From.SubnetMembers(k.vnet, k.subnet) {
				if _, touched := d.After[name]; !touched {
					if s := d.From.FindServer(name); s != nil && !slices.Contains(servers, s) {
						servers = append(servers, s)
					}
				}
			}
		}
		for _, s := range servers {
			if i := d.place(s); i >= 0 {
				check = append(check, i)
			}
		}
		slices.Sort(check)
	} else {
		for from, chunk := range t.Servers.Chunks() {
			for i, s := range chunk {
				if len(subnets) > 0 && s.Network != nil && slices.Contains(subnets, subnetKey{s.Network.VNet, s.Network.Subnet}) || slices.Contains(changed, s) {
					check = append(check, from+i)
				}
			}
		}
	}
	// A validator over the cached facts, with fresh tallies for the
	// subnets its servers fill (the cache's own are left untouched).
	// The facts of the VNets whose subnets are checked are laid over the
	// cache's (vnetOver) rather than copying its map of every VNet.
	v := &validator{topo: t, regionN: c.facts.regionN, zoneN: c.facts.zoneN, vnetN: c.facts.vnetN, vnetOver: map[string]*vnetFacts{}}
	for _, k := range subnets {
		f := v.vnetFacts(k.vnet)
		if f == nil {
			continue
		}
		cp := *f
		cp.subnets = maps.Clone(f.subnets)
		if sf := cp.subnets[k.subnet]; sf != nil {
			cp.subnets[k.subnet] = &subnetFacts{prefix: sf.prefix, valid: sf.valid, addresses: map[netip.Addr]string{}}
		}
		v.vnetOver[k.vnet] = &cp
	}
	v.checkServers(check)
	return append(slices.Clone(c.facts.out), v.out...), v.warn
}

// sameSlice reports whether two slices are the same memory: topologies
// never change a slice in place, so the same memory holds the same objects.
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// validator gathers violations and the indexes later checks need.
type validator struct {
	topo    *Topology
	out     Violations
	warn    Violations
	regionN map[string]bool
	vnetN   map[string]*vnetFacts
	// vnetOver, if not nil, holds facts that replace vnetN's for the
	// servers' checks (vnetFacts reads through it).
	vnetOver map[string]*vnetFacts
	zoneN    map[string]*PrivateDNSZone
	serverN  map[string]bool
}

// vnetFacts returns what validation learned of a VNet, or nil.
func (v *validator) vnetFacts(name string) *vnetFacts {
	if f, ok := v.vnetOver[name]; ok {
		return f
	}
	return v.vnetN[name]
}

// vnetFacts is what validation learned of a VNet.
type vnetFacts struct {
	vnet     *VNet
	spaces   []netip.Prefix
	subnets  map[string]*subnetFacts
	peerings map[string]bool
}

// subnetFacts is what validation learned of a subnet.
type subnetFacts struct {
	prefix    netip.Prefix
	valid     bool
	used      int                   // addresses allocated by servers (T11)
	servers   []string              // who holds them, in order
	addresses map[netip.Addr]string // address -> server
}

func (v *validator) fail(rule, path, object, field, format string, args ...any) {
	v.out = append(v.out, Violation{Rule: rule, Path: path, Object: object, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(rule, path, object, field, format string, args ...any) {
	v.warn = append(v.warn, Violation{Rule: rule, Path: path, Object: object, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) datacenterRanges() {
	for i, r := range v.topo.DatacenterRanges {
		if _, problem := parseIPv4Prefix(r); problem != "" {
			v.fail("F1", fmt.Sprintf("datacenterRanges.%d", i), "topology", "datacenterRanges", "%s", problem)
		}
	}
}

func (v *validator) regions() {
	v.regionN = make(map[string]bool, len(v.topo.Regions))
	for i, r := range v.topo.Regions {
		path := fmt.Sprintf("regions.%d", i)
		obj := fmt.Sprintf("region %q", r.Name)
		switch {
		case !validLabel(r.Name):
			v.fail("schema", path+".name", obj, "name", "a region name is 1 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit (it is a DNS label)")
		case v.regionN[r.Name]:
			v.fail("schema", path+".name", obj, "name", "region %q is defined twice", r.Name)
		}
		v.regionN[r.Name] = true
		if r.Gateways.IsPublished() && len(r.Addresses()) == 0 {
			v.fail("T1", path+".gateways", obj, "gateways", "Azure published no gateway addresses for region %q; the published regions are %s; or list the region's addresses", r.Name, strings.Join(PublishedRegions(), ", "))
			continue
		}
		if n := len(r.Addresses()); n < 1 || n > 3 {
			v.fail("T1", path+".gateways", obj, "gateways", "a region has a primary gateway address and an optional secondary and tertiary one; %d given", n)
		}
		seen := map[netip.Addr]bool{}
		for j, g := range r.Addresses() {
			a, problem := parseIPv4(g)
			if problem != "" {
				v.fail("T1", fmt.Sprintf("%s.gateways.%d", path, j), obj, "gateways", "%s", problem)
				continue
			}
			if seen[a] {
				v.fail("T1", fmt.Sprintf("%s.gateways.%d", path, j), obj, "gateways", "gateway address %s is listed twice", a)
			}
			seen[a] = true
		}
	}
}

func (v *validator) vnets() {
	v.vnetN = make(map[string]*vnetFacts, len(v.topo.VNets))
	resolvers := map[netip.Addr]string{}
	for i := range v.topo.VNets {
		vn := &v.topo.VNets[i]
		path := fmt.Sprintf("vnets.%d", i)
		obj := fmt.Sprintf("vnet %q", vn.Name)
		facts := &vnetFacts{vnet: vn, subnets: map[string]*subnetFacts{}, peerings: map[string]bool{}}
		switch {
		case !validObjectName(vn.Name):
			v.fail("schema", path+".name", obj, "name", "a VNet name is 1 to 80 letters, digits, '.', '_' or '-', starting with a letter or digit")
		case v.vnetN[vn.Name] != nil:
			v.fail("schema", path+".name", obj, "name", "vnet %q is defined twice", vn.Name)
		default:
			v.vnetN[vn.Name] = facts
		}
		if !v.regionN[vn.Region] {
			v.fail("T4", path+".region", obj, "region", "region %q is not defined; a VNet belongs to one of the topology's regions", vn.Region)
		}
		if len(vn.AddressSpaces) == 0 {
			v.fail("schema", path+".addressSpaces", obj, "addressSpaces", "a VNet needs at least one address space (an IPv4 CIDR)")
		}
		for j, s := range vn.AddressSpaces {
			p, problem := parseIPv4Prefix(s)
			if problem != "" {
				v.fail("schema", fmt.Sprintf("%s.addressSpaces.%d", path, j), obj, "addressSpaces", "%s", problem)
				continue
			}
			for _, q := range facts.spaces {
				if p.Overlaps(q) {
					v.fail("schema", fmt.Sprintf("%s.addressSpaces.%d", path, j), obj, "addressSpaces", "address space %s overlaps %s of the same VNet", p, q)
				}
			}
			facts.spaces = append(facts.spaces, p)
		}
		if vn.ResolverAddress != "" {
			a, problem := parseIPv4(vn.ResolverAddress)
			switch {
			case problem != "":
				v.fail("D4", path+".resolverAddress", obj, "resolverAddress", "%s", problem)
			case resolvers[a] != "":
				v.fail("D4", path+".resolverAddress", obj, "resolverAddress", "resolver address %s is already vnet %q's; each VNet needs its own", a, resolvers[a])
			default:
				resolvers[a] = vn.Name
			}
		}
		for j, d := range vn.DNSServers {
			if _, problem := parseIPv4(d); problem != "" {
				v.fail("schema", fmt.Sprintf("%s.dnsServers.%d", path, j), obj, "dnsServers", "%s", problem)
			}
		}
		v.subnets(path, vn, facts)
	}
	// Peerings, once every VNet is known. A peering listed on either side
	// connects both.
	for i := range v.topo.VNets {
		vn := &v.topo.VNets[i]
		for j, p := range vn.Peerings {
			path := fmt.Sprintf("vnets.%d.peerings.%d", i, j)
			obj := fmt.Sprintf("vnet %q", vn.Name)
			other := v.vnetN[p]
			switch {
			case p == vn.Name:
				v.fail("schema", path, obj, "peerings", "a VNet cannot be peered with itself")
			case other == nil:
				v.fail("schema", path, obj, "peerings", "peered vnet %q is not defined", p)
			default:
				if self := v.vnetN[vn.Name]; self != nil {
					self.peerings[p] = true
					other.peerings[vn.Name] = true
				}
			}
		}
	}
	v.overlaps()
}

// overlaps checks address spaces across VNets: peered VNets may not overlap
// (T5); other overlapping VNets must each have a resolver address that tells
// their clients apart (D4).
func (v *validator) overlaps() {
	type space struct {
		prefix netip.Prefix
		vnet   int
	}
	var all []space
	for i, vn := range v.topo.VNets {
		if f := v.vnetN[vn.Name]; f != nil && f.vnet == &v.topo.VNets[i] {
			for _, p := range f.spaces {
				all = append(all, space{p, i})
			}
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].prefix.Addr().Less(all[b].prefix.Addr()) })
	reported := map[[2]int]bool{}
	for a := range all {
		last := lastAddr(all[a].prefix)
		for b := a + 1; b < len(all) && !last.Less(all[b].prefix.Addr()); b++ {
			i, j := all[a].vnet, all[b].vnet
			if i == j {
				continue
			}
			if i > j {
				i, j = j, i
			}
			if reported[[2]int{i, j}] {
				continue
			}
			reported[[2]int{i, j}] = true
			vi, vj := &v.topo.VNets[i], &v.topo.VNets[j]
			obj := fmt.Sprintf("vnet %q", vj.Name)
			path := fmt.Sprintf("vnets.%d.addressSpaces", j)
			switch {
			case v.vnetN[vi.Name].peerings[vj.Name]:
				v.fail("T5", path, obj, "addressSpaces", "address spaces overlap those of peered vnet %q (%s and %s); peered VNets need distinct address spaces", vi.Name, all[a].prefix, all[b].prefix)
			case vi.ResolverAddress == "" || vj.ResolverAddress == "":
				v.fail("D4", path, obj, "addressSpaces", "address spaces overlap those of vnet %q (%s and %s) and no resolver address tells their clients apart; give both VNets a resolverAddress or use distinct ranges", vi.Name, all[a].prefix, all[b].prefix)
			}
		}
	}
}

func (v *validator) subnets(vpath string, vn *VNet, facts *vnetFacts) {
	for j, s := range vn.Subnets {
		path := fmt.Sprintf("%s.subnets.%d", vpath, j)
		obj := fmt.Sprintf("subnet %q in vnet %q", s.Name, vn.Name)
		switch {
		case !validObjectName(s.Name):
			v.fail("schema", path+".name", obj, "name", "a subnet name is 1 to 80 letters, digits, '.', '_' or '-', starting with a letter or digit")
		case facts.subnets[s.Name] != nil:
			v.fail("schema", path+".name", obj, "name", "subnet %q is defined twice in vnet %q", s.Name, vn.Name)
		}
		for _, r := range reservedSubnetNames {
			if strings.EqualFold(s.Name, r) {
				v.fail("T8", path+".name", obj, "name", "the name %s is reserved for Azure's own services; choose another subnet name", r)
			}
		}
		sf := &subnetFacts{addresses: map[netip.Addr]string{}}
		if facts.subnets[s.Name] == nil {
			facts.subnets[s.Name] = sf
		}
		p, problem := parseIPv4Prefix(s.CIDR)
		if problem != "" {
			v.fail("schema", path+".cidr", obj, "cidr", "%s", problem)
			continue
		}
		if p.Bits() > 28 {
			v.fail("T6", path+".cidr", obj, "cidr", "%s is a /%d; a subnet's prefix length must be at most /28 (16 addresses, 11 usable)", p, p.Bits())
			continue
		}
		inside := false
		for _, space := range facts.spaces {
			if space.Bits() <= p.Bits() && space.Contains(p.Addr()) {
				inside = true
			}
		}
		if !inside {
			v.fail("schema", path+".cidr", obj, "cidr", "%s is not inside any address space of vnet %q (%s)", p, vn.Name, joinPrefixes(facts.spaces))
			continue
		}
		// The subnets before this one, in the file's order: a map's order
		// changed the order of the messages from one check to the next
		// (FuzzNetworkChangesMatchValidate found it).
		for k, other := range vn.Subnets[:j] {
			if slices.ContainsFunc(vn.Subnets[:k], func(o Subnet) bool { return o.Name == other.Name }) {
				continue // a name defined twice has its first definition's facts
			}
			if of := facts.subnets[other.Name]; of != nil && of.valid && of.prefix.Overlaps(p) {
				v.fail("schema", path+".cidr", obj, "cidr", "%s overlaps subnet %q (%s)", p, other.Name, of.prefix)
			}
		}
		sf.prefix, sf.valid = p, true
	}
}

func (v *validator) zones() {
	v.zoneN = make(map[string]*PrivateDNSZone, len(v.topo.PrivateDNSZones))
	for i := range v.topo.PrivateDNSZones {
		z := &v.topo.PrivateDNSZones[i]
		path := fmt.Sprintf("privateDnsZones.%d", i)
		obj := fmt.Sprintf("private DNS zone %q", z.Name)
		name := CanonicalZone(z.Name)
		if problem := zoneNameProblem(name); problem != "" {
			v.fail("Z1", path+".name", obj, "name", "%s", problem)
		} else if v.zoneN[name] != nil {
			v.fail("schema", path+".name", obj, "name", "zone %q is defined twice", name)
		} else {
			v.zoneN[name] = z
		}
		for j, l := range z.Links {
			if v.vnetN[l] == nil {
				v.fail("schema", fmt.Sprintf("%s.links.%d", path, j), obj, "links", "linked vnet %q is not defined", l)
			}
		}
		switch z.Lock {
		case "", LockNone, LockCanNotDelete, LockReadOnly:
		default:
			v.fail("schema", path+".lock", obj, "lock", "lock %q is not one of none, CanNotDelete, ReadOnly", z.Lock)
		}
	}
}

func (v *validator) servers() {
	all := make([]int, v.topo.Servers.Len())
	for i := range all {
		all[i] = i
	}
	v.checkServers(all)
}

// checkServers checks the servers at the given indexes, in that order.
func (v *validator) checkServers(indexes []int) {
	v.serverN = make(map[string]bool, len(indexes))
	for _, i := range indexes {
		s := v.topo.Servers.At(i)
		path := fmt.Sprintf("servers.%d", i)
		obj := fmt.Sprintf("server %q", s.Name)
		switch {
		case !validServerName(s.Name):
			v.fail("schema", path+".name", obj, "name", "a server name is 3 to 63 lowercase letters, digits and hyphens, and starts and ends with a letter or digit")
		case v.serverN[s.Name]:
			v.fail("schema", path+".name", obj, "name", "server %q is defined twice", s.Name)
		}
		v.serverN[s.Name] = true
		if z := v.zoneN[s.Name+"."+Apex]; z != nil {
			// Z2 from each side: the admin API reports the side of the
			// object it was asked to create.
			v.fail("Z2", path+".name", obj, "name", "a private DNS zone named %s.%s exists; a server cannot have the name of the zone's first label", s.Name, Apex)
			zi := slices.IndexFunc(v.topo.PrivateDNSZones, func(pz PrivateDNSZone) bool { return CanonicalZone(pz.Name) == CanonicalZone(z.Name) })
			v.fail("Z2", fmt.Sprintf("privateDnsZones.%d.name", zi), fmt.Sprintf("private DNS zone %q", z.Name), "name",
				"a server named %s exists; a private DNS zone cannot be named %s.%s, the server's own name", s.Name, s.Name, Apex)
		}
		if !v.regionN[s.Region] {
			v.fail("T4", path+".region", obj, "region", "region %q is not defined", s.Region)
		}
		switch s.Access {
		case AccessPrivate:
			v.privateServer(path, obj, s)
		case AccessPublic:
			v.publicServer(path, obj, s)
		default:
			v.fail("schema", path+".access", obj, "access", "access %q is not public or private", s.Access)
		}
		v.backends(path, obj, s)
		v.parameters(path, obj, s)
	}
}

func (v *validator) publicServer(path, obj string, s *Server) {
	if s.Network != nil {
		v.fail("T3", path+".network", obj, "network", "a public server is not placed in a VNet; network applies to private servers only")
	}
	if s.Addresses != nil {
		v.fail("T3", path+".addresses", obj, "addresses", "a public server is reached through its region's gateway; addresses apply to private servers only")
	}
	ruleN := map[string]bool{}
	for j, r := range s.FirewallRules {
		rpath := fmt.Sprintf("%s.firewallRules.%d", path, j)
		robj := fmt.Sprintf("firewall rule %q of server %q", r.Name, s.Name)
		switch {
		case !validObjectName(r.Name):
			v.fail("schema", rpath+".name", robj, "name", "a firewall rule name is 1 to 80 letters, digits, '.', '_' or '-', starting with a letter or digit")
		case ruleN[r.Name]:
			v.fail("schema", rpath+".name", robj, "name", "firewall rule %q is defined twice for server %q", r.Name, s.Name)
		}
		ruleN[r.Name] = true
		if problem := FirewallRuleProblem(r); problem != nil {
			problem.Path = rpath + "." + problem.Field
			problem.Object = robj
			v.out = append(v.out, *problem)
		}
	}
}

// FirewallRuleProblem checks a rule's addresses: IPv4 only (F1), start not
// after end (F2). It returns nil for a good rule. The caller sets Path and
// Object.
func FirewallRuleProblem(r FirewallRule) *Violation {
	start, problem := parseIPv4(r.StartIPAddress)
	if problem != "" {
		return &Violation{Rule: "F1", Field: "startIpAddress", Message: problem}
	}
	end, problem := parseIPv4(r.EndIPAddress)
	if problem != "" {
		return &Violation{Rule: "F1", Field: "endIpAddress", Message: problem}
	}
	if end.Less(start) {
		return &Violation{Rule: "F2", Field: "endIpAddress", Message: fmt.Sprintf("end %s is before start %s; a rule's start address must not be after its end address", end, start)}
	}
	return nil
}

func (v *validator) privateServer(path, obj string, s *Server) {
	if len(s.FirewallRules) > 0 {
		v.fail("T3", path+".firewallRules", obj, "firewallRules", "a private server takes no firewall rules: it admits its own VNet and directly peered VNets only")
	}
	n := s.Network
	if n == nil {
		v.fail("T3", path+".network", obj, "network", "a private server needs network.vnet, network.subnet and network.privateDnsZone")
		return
	}
	vf := v.vnetFacts(n.VNet)
	if vf == nil {
		v.fail("schema", path+".network.vnet", obj, "network.vnet", "vnet %q is not defined", n.VNet)
	} else if vf.vnet.Region != s.Region {
		v.fail("T4", path+".network.vnet", obj, "network.vnet", "vnet %q is in region %q but the server is in %q; a server and its VNet share one region", n.VNet, vf.vnet.Region, s.Region)
	}
	zone := CanonicalZone(n.PrivateDNSZone)
	if v.zoneN[zone] == nil {
		v.fail("schema", path+".network.privateDnsZone", obj, "network.privateDnsZone", "private DNS zone %q is not defined", n.PrivateDNSZone)
	} else if z := v.zoneN[zone]; s.HighAvailability && z.Lock == LockReadOnly {
		v.warnf("D10", path+".network.privateDnsZone", obj, "network.privateDnsZone", "zone %q is locked ReadOnly and holds this HA server's record: a failover will not be able to update it", zone)
	}
	if vf == nil {
		return
	}
	sf := vf.subnets[n.Subnet]
	var sub *Subnet
	for k := range vf.vnet.Subnets {
		if vf.vnet.Subnets[k].Name == n.Subnet {
			sub = &vf.vnet.Subnets[k]
		}
	}
	if sub == nil || sf == nil {
		v.fail("schema", path+".network.subnet", obj, "network.subnet", "subnet %q is not defined in vnet %q", n.Subnet, n.VNet)
		return
	}
	if sub.Delegation != DelegationFlexibleServers {
		v.fail("T9", path+".network.subnet", obj, "network.subnet", "subnet %q is not delegated to %s (delegation %q); flexible servers need a delegated subnet", n.Subnet, DelegationFlexibleServers, sub.Delegation)
	}
	if !sf.valid {
		return
	}
	need := 1
	if s.HighAvailability {
		need = 4
	}
	if usable := UsableAddresses(sf.prefix); sf.used+need > usable {
		v.fail("T11", path+".network.subnet", obj, "network.subnet", "subnet %q (%s) has %d usable addresses; %d are taken (%s) and this server needs %d", n.Subnet, sf.prefix, usable, sf.used, strings.Join(sf.servers, ", "), need)
	} else {
		sf.used += need
		sf.servers = append(sf.servers, s.Name)
	}
	if s.Addresses == nil {
		v.fail("schema", path+".addresses", obj, "addresses", "a private server needs addresses.primary, the private address its DNS record gives out")
		return
	}
	v.privateAddress(path+".addresses.primary", obj, "addresses.primary", s.Addresses.Primary, s.Name, sf)
	switch {
	case s.HighAvailability && s.Addresses.Standby == "":
		v.fail("schema", path+".addresses.standby", obj, "addresses.standby", "an HA server needs addresses.standby, the address its record flips to on failover")
	case s.Addresses.Standby != "":
		v.privateAddress(path+".addresses.standby", obj, "addresses.standby", s.Addresses.Standby, s.Name, sf)
	}
}

// privateAddress checks that a server's private address lies in its subnet,
// is not reserved (T7) and is not another server's.
func (v *validator) privateAddress(path, obj, field, value, server string, sf *subnetFacts) {
	a, problem := parseIPv4(value)
	if problem != "" {
		v.fail("schema", path, obj, field, "%s", problem)
		return
	}
	if !sf.prefix.Contains(a) {
		v.fail("schema", path, obj, field, "%s is outside the server's subnet %s", a, sf.prefix)
		return
	}
	if reservedAddress(sf.prefix, a) {
		v.fail("T7", path, obj, field, "%s is reserved: the first four and the last address of %s are not usable", a, sf.prefix)
		return
	}
	if other := sf.addresses[a]; other != "" {
		v.fail("schema", path, obj, field, "%s is already server %q's address", a, other)
		return
	}
	sf.addresses[a] = server
}

func (v *validator) backends(path, obj string, s *Server) {
	if problem := hostPortProblem(s.Backends.Primary); problem != "" {
		v.fail("schema", path+".backends.primary", obj, "backends.primary", "%s", problem)
	}
	switch {
	case s.HighAvailability && s.Backends.Standby == "":
		v.fail("schema", path+".backends.standby", obj, "backends.standby", "an HA server needs backends.standby, where its standby PostgreSQL runs")
	case !s.HighAvailability && s.Backends.Standby != "":
		v.fail("schema", path+".backends.standby", obj, "backends.standby", "a standby backend is given but highAvailability is off")
	case s.Backends.Standby != "":
		if problem := hostPortProblem(s.Backends.Standby); problem != "" {
			v.fail("schema", path+".backends.standby", obj, "backends.standby", "%s", problem)
		}
	}
}

func (v *validator) parameters(path, obj string, s *Server) {
	keys := make([]string, 0, len(s.Parameters))
	for k := range s.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if problem := ParameterProblem(k, s.Parameters[k]); problem != "" {
			v.fail("G4", path+".parameters."+k, obj, "parameters."+k, "%s", problem)
		}
	}
	lo, hi := s.Parameters[ParamSSLMinProtocolVersion], s.Parameters[ParamSSLMaxProtocolVersion]
	if lo != "" && hi != "" && tlsRank(lo) >= 0 && tlsRank(hi) >= 0 && tlsRank(hi) < tlsRank(lo) {
		v.fail("G4", path+".parameters."+ParamSSLMaxProtocolVersion, obj, "parameters."+ParamSSLMaxProtocolVersion, "%s is below ssl_min_protocol_version %s", hi, lo)
	}
	v.failoverParameters(path, obj, s)
}

// ParameterNames returns the server parameters pgplane knows.
func ParameterNames() []string {
	return []string{ParamRequireSecureTransport, ParamSSLMinProtocolVersion, ParamSSLMaxProtocolVersion, ParamAuthRole,
		ParamPromote, ParamPromoteGrace, ParamPatroniPrimary, ParamPatroniStandby}
}

// ParameterProblem checks one server parameter; it returns "" when the name is
// known and the value is allowed.
func ParameterProblem(name, value string) string {
	switch name {
	case ParamRequireSecureTransport:
		if _, ok := parseOnOff(value); !ok {
			return fmt.Sprintf("%q is not on or off", value)
		}
	case ParamSSLMinProtocolVersion, ParamSSLMaxProtocolVersion:
		if tlsRank(value) < 0 {
			return fmt.Sprintf("%q is not one of %s", value, strings.Join(tlsVersions, ", "))
		}
	case ParamAuthRole:
		if !validRoleName(value) {
			return fmt.Sprintf("%q is not a role name (1 to 63 letters, digits, _, $ or -, not starting with a digit or $)", value)
		}
	default:
		if problem, ok := failoverParameterProblem(name, value); ok {
			return problem
		}
		return fmt.Sprintf("unknown parameter %q; pgplane knows %s", name, strings.Join(ParameterNames(), ", "))
	}
	return ""
}

// validRoleName accepts the role names pgplane can write in a password file
// without quoting: 1 to 63 letters, digits, '_', '$' and '-', not starting
// with a digit or '$'.
func validRoleName(s string) bool {
	if s == "" || len(s) > 63 || (s[0] >= '0' && s[0] <= '9') || s[0] == '$' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '$' || r == '-') {
			return false
		}
	}
	return true
}

// parseOnOff reads a PostgreSQL boolean in its on/off spellings.
func parseOnOff(s string) (on, ok bool) {
	switch strings.ToLower(s) {
	case "on", "true", "1", "yes":
		return true, true
	case "off", "false", "0", "no":
		return false, true
	}
	return false, false
}

func tlsRank(version string) int {
	for i, t := range tlsVersions {
		if t == version {
			return i
		}
	}
	return -1
}

// CanonicalZone lowercases a zone name and drops a final dot.
func CanonicalZone(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// zoneNameProblem checks Z1 on a canonical zone name.
func zoneNameProblem(name string) string {
	prefix, ok := strings.CutSuffix(name, "."+Apex)
	if !ok || prefix == "" {
		return fmt.Sprintf("a private DNS zone's name ends in .%s with at least one label before it", Apex)
	}
	labels := strings.Split(prefix, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return fmt.Sprintf("label %q is not a DNS label (letters, digits and hyphens, 1 to 63 characters)", l)
		}
	}
	if labels[len(labels)-1] == ControlLabel {
		return fmt.Sprintf("%s.%s holds the regions' gateway names; choose another zone name", ControlLabel, Apex)
	}
	return ""
}

// parseIPv4 parses an IPv4 address and says what is wrong when it is not one.
func parseIPv4(s string) (netip.Addr, string) {
	if s == "" {
		return netip.Addr{}, "an IPv4 address is required"
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Sprintf("%q is not an IPv4 address", s)
	case a.Is4In6():
		return a.Unmap(), ""
	case a.Is6():
		return netip.Addr{}, fmt.Sprintf("%q is an IPv6 address; only IPv4 is supported", s)
	}
	return a, ""
}

// parseIPv4Prefix parses an IPv4 CIDR whose host bits are zero.
func parseIPv4Prefix(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	switch {
	case s == "":
		return netip.Prefix{}, "an IPv4 CIDR is required"
	case err != nil:
		return netip.Prefix{}, fmt.Sprintf("%q is not an IPv4 CIDR such as 10.0.0.0/16", s)
	case p.Addr().Is6():
		return netip.Prefix{}, fmt.Sprintf("%q is an IPv6 prefix; only IPv4 is supported", s)
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Sprintf("%q has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, ""
}

func hostPortProblem(s string) string {
	if s == "" {
		return "a backend address host:port is required"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q has no valid port (1 to 65535)", s)
	}
	return ""
}

// UsableAddresses is the number of addresses of a subnet that servers can
// take: all but the first four and the last (T7).
func UsableAddresses(p netip.Prefix) int {
	return 1<<(32-p.Bits()) - 5
}

func reservedAddress(p netip.Prefix, a netip.Addr) bool {
	offset := addrUint(a) - addrUint(p.Addr())
	return offset < 4 || a == lastAddr(p)
}

func lastAddr(p netip.Prefix) netip.Addr {
	return uintAddr(addrUint(p.Addr()) | (1<<(32-p.Bits()) - 1))
}

func addrUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintAddr(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
