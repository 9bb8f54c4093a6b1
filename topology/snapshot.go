package topology

import (
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"sort"

	"github.com/pgplane/pgplane/internal/layermap"
)

// PublicView is the view of a client in no VNet.
const PublicView = -1

// State is the run-time part of the service that flips on failure: the active
// gateway address of each region and the HA servers that run on their standby.
// The zero State has every region on its primary and every server on its
// primary.
type State struct {
	// ActiveGateway maps a region to the index of its active gateway address
	// (0 primary, 1 secondary, 2 tertiary).
	ActiveGateway map[string]int
	// FailedOver holds the HA servers whose standby is now the primary.
	FailedOver map[string]bool
}

// Snapshot is an immutable, validated topology with its run-time state and the
// indexes that the hot paths read without locking. Build a new one for every
// change and swap it in with one atomic store.
type Snapshot struct {
	Topology *Topology
	State    State
	// Serial increases with every snapshot; DNS uses it as the SOA serial.
	Serial uint32
	// Change, when set, says what changed since the snapshot before
	// (WithServers); nil: anything may have.
	Change *Change

	VNets   []*VNetInfo
	Regions map[string]*RegionInfo
	servers layermap.Map[*ServerInfo] // by name; Server and Servers read it
	// subnets holds the names of the servers placed in each subnet (by
	// subnetKey), in no order: a change's validation finds the servers
	// that share its subnets here, not by a pass over every server.
	subnets layermap.Map[[]string]
	// defaults are the policies of a server without parameters, shared
	// by all of them (set while the snapshot is built, read-only after).
	defaults *ServerPolicies
	Zones    map[string]*ZoneInfo

	vnetByName map[string]*VNetInfo
	resolvers  map[netip.Addr]int
	sources    prefixTable
	cloud      []ipRange // what the 0.0.0.0 firewall rule admits (F3)
}

// VNetInfo is a VNet as the hot paths see it.
type VNetInfo struct {
	Index  int
	Name   string
	Region string
	Spaces []netip.Prefix
	// Peers holds the indexes of directly peered VNets.
	Peers map[int]bool
}

// RegionInfo is a region with its resolved gateway addresses.
type RegionInfo struct {
	Name     string
	Gateways []netip.Addr
	// Active is the address the region's gateway name resolves to (T1).
	Active netip.Addr
	// GatewayName is REGION.control.postgres.database.azure.com.
	GatewayName string
}

// ServerInfo is a server as the hot paths see it.
type ServerInfo struct {
	Server *Server
	Region *RegionInfo
	// VNet and Zone are set for private servers.
	VNet *VNetInfo
	Zone *ZoneInfo
	// Address is the private address the server's record gives out now: the
	// primary address, or the standby's after a failover.
	Address netip.Addr
	// ServerPolicies are what the server's parameters make of it (si.TLS,
	// si.AuthRole, si.Failover); servers without parameters share one.
	*ServerPolicies
	access access
	// Private is set for a private server.
	Private bool
	// RecordBlocked is set when the server failed over but its private
	// zone's ReadOnly lock keeps the record on the old address (D10).
	RecordBlocked bool
	onStandby     bool // the HA server failed over: Backend is the standby's
}

// Backend is the host:port the gateway routes to now: the primary's, or
// the standby's after a failover. (A method, not a field: a string per
// server less.)
func (si *ServerInfo) Backend() string {
	if si.onStandby {
		return si.Server.Backends.Standby
	}
	return si.Server.Backends.Primary
}

// ServerPolicies are a server's policies from its parameters, held apart
// from ServerInfo so that the servers without parameters (most) share one
// rather than each holding about a hundred bytes of defaults.
type ServerPolicies struct {
	// TLS is the server's TLS policy (G4).
	TLS TLSPolicy
	// AuthRole is the server's pgplane.auth_role parameter: the role the
	// gateway looks verifiers up with; "" means the gateway's default (G7).
	AuthRole string
	// Failover is how an HA server fails over: who promotes, and where its
	// backends' roles come from (C6).
	Failover FailoverPolicy
}

// newServerPolicies reads the policies from a server's parameters.
func newServerPolicies(params map[string]string) *ServerPolicies {
	return &ServerPolicies{TLS: newTLSPolicy(params), AuthRole: params[ParamAuthRole], Failover: newFailoverPolicy(params)}
}

// policiesOf returns the policies of a server with these parameters: the
// snapshot's shared defaults when there are none.
func (s *Snapshot) policiesOf(params map[string]string) *ServerPolicies {
	if len(params) == 0 {
		if s.defaults == nil {
			s.defaults = newServerPolicies(nil)
		}
		return s.defaults
	}
	return newServerPolicies(params)
}

// ZoneInfo is a private DNS zone with the records of its servers.
type ZoneInfo struct {
	Name  string
	Index int
	Lock  string
	links []int32 // the linked VNets' indexes, sorted: a zone links a few of them
}

// LinkedTo reports whether clients in the given view see the zone.
func (z *ZoneInfo) LinkedTo(view int) bool {
	if view < 0 {
		return false
	}
	_, found := slices.BinarySearch(z.links, int32(view))
	return found
}

// GatewayName returns the DNS name of a region's gateway.
func GatewayName(region string) string {
	return region + "." + ControlLabel + "." + Apex
}

// NewSnapshot builds the indexes of a topology that Validate accepted.
func NewSnapshot(t *Topology, state State, serial uint32) (*Snapshot, error) {
	s := &Snapshot{Topology: t, State: state, Serial: serial, Regions: make(map[string]*RegionInfo, len(t.Regions))}
	for _, r := range t.Regions {
		ri := &RegionInfo{Name: r.Name, GatewayName: GatewayName(r.Name)}
		for _, g := range r.Addresses() {
			a, problem := parseIPv4(g)
			if problem != "" {
				return nil, fmt.Errorf("region %q: %s", r.Name, problem)
			}
			ri.Gateways = append(ri.Gateways, a)
		}
		active := state.ActiveGateway[r.Name]
		if active < 0 || active >= len(ri.Gateways) {
			return nil, fmt.Errorf("region %q: active gateway index %d out of range", r.Name, active)
		}
		ri.Active = ri.Gateways[active]
		s.Regions[r.Name] = ri
	}
	if err := s.buildNetwork(nil); err != nil {
		return nil, err
	}
	servers := make(map[string]*ServerInfo, t.Servers.Len())
	subnets := map[string][]string{}
	// The servers' views are allocated together: one by one, between the
	// indexes' allocations, they were spread over more heap pages.
	infos := make([]ServerInfo, t.Servers.Len())
	for i, srv := range t.Servers.All() {
		if n := srv.Network; n != nil {
			k := subnetKey(n.VNet, n.Subnet)
			subnets[k] = append(subnets[k], srv.Name)
		}
		si := &infos[i]
		if err := s.fillServerInfo(si, srv); err != nil {
			return nil, err
		}
		si.buildAccess()
		servers[srv.Name] = si
	}
	s.servers = layermap.Of(servers)
	s.subnets = layermap.Of(subnets)
	s.buildCloud()
	return s, nil
}

// buildNetwork indexes s.Topology's VNets and private DNS zones: s.VNets,
// the views' lookups (by name, resolver address and source address) and
// s.Zones. An equal VNetInfo or ZoneInfo of was (nil: none) is taken over
// rather than made again, so that the servers pointing at it stay as they
// are.
func (s *Snapshot) buildNetwork(was *Snapshot) error {
	t := s.Topology
	s.VNets = make([]*VNetInfo, 0, len(t.VNets))
	s.Zones = make(map[string]*ZoneInfo, len(t.PrivateDNSZones))
	s.vnetByName = make(map[string]*VNetInfo, len(t.VNets))
	s.resolvers = map[netip.Addr]int{}
	var entries []prefixEntry
	for i, vn := range t.VNets {
		vi := &VNetInfo{Index: i, Name: vn.Name, Region: vn.Region, Peers: map[int]bool{}}
		for _, sp := range vn.AddressSpaces {
			p, problem := parseIPv4Prefix(sp)
			if problem != "" {
				return fmt.Errorf("vnet %q: %s", vn.Name, problem)
			}
			vi.Spaces = append(vi.Spaces, p)
			entries = append(entries, prefixEntry{p, i})
		}
		if vn.ResolverAddress != "" {
			a, _ := parseIPv4(vn.ResolverAddress)
			s.resolvers[a] = i
		}
		s.VNets = append(s.VNets, vi)
		s.vnetByName[vn.Name] = vi
	}
	for i, vn := range t.VNets {
		for _, p := range vn.Peerings {
			if peer := s.vnetByName[p]; peer != nil {
				s.VNets[i].Peers[peer.Index] = true
				peer.Peers[i] = true
			}
		}
	}
	if was != nil {
		for i, vi := range s.VNets {
			if old := was.vnetByName[vi.Name]; old != nil && old.Index == vi.Index && old.Region == vi.Region && slices.Equal(old.Spaces, vi.Spaces) && maps.Equal(old.Peers, vi.Peers) {
				s.VNets[i], s.vnetByName[vi.Name] = old, old
			}
		}
	}
	s.sources = newPrefixTable(entries)
	for i, z := range t.PrivateDNSZones {
		zi := &ZoneInfo{Name: CanonicalZone(z.Name), Index: i, Lock: z.Lock}
		for _, l := range z.Links {
			if vi := s.vnetByName[l]; vi != nil {
				zi.links = append(zi.links, int32(vi.Index))
			}
		}
		slices.Sort(zi.links)
		if was != nil {
			if old := was.Zones[zi.Name]; old != nil && old.Index == zi.Index && old.Lock == zi.Lock && slices.Equal(old.links, zi.links) {
				zi = old
			}
		}
		s.Zones[zi.Name] = zi
	}
	return nil
}

// WithNetwork returns the snapshot of t, a topology that differs from s's
// in its VNets and private DNS zones alone (NetworkChanges; Validate
// accepted it), at the cost of the VNets and zones and of the private
// servers whose VNet or zone is indexed anew: the views and zones are
// indexed again, equal ones taken over, and the servers of unchanged VNets
// and zones are kept as they are.
//
// t must share s's server list (ServerList.Same): the servers' views point
// at their servers. Given another list it makes the snapshot from scratch.
func (s *Snapshot) WithNetwork(t *Topology, serial uint32) (*Snapshot, error) {
	if !t.Servers.Same(s.Topology.Servers) {
		return NewSnapshot(t, s.State, serial)
	}
	next := &Snapshot{Topology: t, State: s.State, Serial: serial, Regions: s.Regions, subnets: s.subnets, defaults: s.defaults}
	if err := next.buildNetwork(s); err != nil {
		return nil, err
	}
	set := map[string]*ServerInfo{}
	again := func(si *ServerInfo) error {
		if si == nil || !si.Private || set[si.Server.Name] != nil {
			return nil
		}
		n := si.Server.Network
		if next.vnetByName[n.VNet] == si.VNet && next.Zones[CanonicalZone(n.PrivateDNSZone)] == si.Zone {
			return nil
		}
		fresh, err := next.newServerInfo(si.Server)
		if err != nil {
			return err
		}
		fresh.buildAccess()
		set[si.Server.Name] = fresh
		return nil
	}
	// The servers of the VNets indexed anew, through the subnets they are
	// placed in.
	for _, vn := range s.Topology.VNets {
		if next.vnetByName[vn.Name] == s.vnetByName[vn.Name] {
			continue
		}
		for _, sn := range vn.Subnets {
			for _, name := range s.SubnetMembers(vn.Name, sn.Name) {
				if err := again(s.Server(name)); err != nil {
					return nil, err
				}
			}
		}
	}
	// The servers of the zones indexed anew (a zone's lock or links
	// changed, or a VNet's deletion moved the indexes its links hold): a
	// pass over the server list, reading only the zones' names.
	if changed := next.zonesAnew(s); len(changed) > 0 {
		for _, chunk := range t.Servers.Chunks() {
			for _, srv := range chunk {
				if srv.Network != nil && changed[CanonicalZone(srv.Network.PrivateDNSZone)] {
					if err := again(s.Server(srv.Name)); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	next.servers = s.servers.With(set, nil)
	next.buildCloud()
	return next, nil
}

// zonesAnew returns the names of the zones was held that s holds as other
// ZoneInfos, or not at all.
func (s *Snapshot) zonesAnew(was *Snapshot) map[string]bool {
	changed := map[string]bool{}
	for name, z := range was.Zones {
		if s.Zones[name] != z {
			changed[name] = true
		}
	}
	return changed
}

// ZoneRecord returns the server whose record label holds in zone z (a
// private server placed in z), or nil. A zone's records are its servers':
// they are found through the servers' index rather than kept per zone.
func (s *Snapshot) ZoneRecord(z *ZoneInfo, label string) *ServerInfo {
	if si := s.Server(label); si != nil && si.Private && si.Zone.Name == z.Name {
		return si
	}
	return nil
}

// Server returns the server of that name, or nil.
func (s *Snapshot) Server(name string) *ServerInfo {
	si, _ := s.servers.Get(name)
	return si
}

// FindServer returns the snapshot's topology's server of that name, or nil.
func (s *Snapshot) FindServer(name string) *Server {
	if si := s.Server(name); si != nil {
		return si.Server
	}
	return nil
}

// SubnetMembers returns the names of the servers placed in a VNet's subnet
// (network.vnet and network.subnet), in no order. The slice is shared: do
// not change it.
func (s *Snapshot) SubnetMembers(vnet, subnet string) []string {
	m, _ := s.subnets.Get(subnetKey(vnet, subnet))
	return m
}

// subnetKey is the subnets index's key of a VNet's subnet.
func subnetKey(vnet, subnet string) string { return vnet + "\x00" + subnet }

// Servers returns every server by name, in no particular order.
func (s *Snapshot) Servers() iter.Seq2[string, *ServerInfo] { return s.servers.All() }

// ServerNames returns the names of the servers, sorted.
func (s *Snapshot) ServerNames() []string {
	names := make([]string, 0, s.servers.Len())
	for name := range s.servers.All() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ServerCount returns the number of servers.
func (s *Snapshot) ServerCount() int { return s.servers.Len() }

// newServerInfo makes a server's hot-path view in snapshot s, whose
// regions, VNets and zones it points at; the caller files it in
// s's servers and, for a private server, in its zone's records.
func (s *Snapshot) newServerInfo(srv *Server) (*ServerInfo, error) {
	si := new(ServerInfo)
	if err := s.fillServerInfo(si, srv); err != nil {
		return nil, err
	}
	return si, nil
}

// fillServerInfo sets si to srv's hot-path view in snapshot s.
func (s *Snapshot) fillServerInfo(si *ServerInfo, srv *Server) error {
	failed := srv.HighAvailability && s.State.FailedOver[srv.Name]
	*si = ServerInfo{Server: srv, Private: srv.Access == AccessPrivate, Region: s.Regions[srv.Region], onStandby: failed,
		ServerPolicies: s.policiesOf(srv.Parameters)}
	if si.Region == nil {
		return fmt.Errorf("server %q: region %q is not defined", srv.Name, srv.Region)
	}
	if si.Private {
		si.VNet = s.vnetByName[srv.Network.VNet]
		si.Zone = s.Zones[CanonicalZone(srv.Network.PrivateDNSZone)]
		if si.VNet == nil || si.Zone == nil {
			return fmt.Errorf("server %q: vnet or private DNS zone is not defined", srv.Name)
		}
		addr := srv.Addresses.Primary
		switch {
		case failed && si.Zone.Lock == LockReadOnly:
			si.RecordBlocked = true
		case failed:
			addr = srv.Addresses.Standby
		}
		si.Address, _ = parseIPv4(addr)
	}
	return nil
}

// CNAMETarget is where NAME.postgres.database.azure.com points: the
// region's gateway name, or NAME.<private zone>. It is made when asked
// rather than kept: kept, it was a string per private server.
func (si *ServerInfo) CNAMETarget() string {
	if si.Private {
		return si.Server.Name + "." + si.Zone.Name
	}
	return si.Region.GatewayName
}

// ViewOf returns the view of a query: the VNet whose resolver address the
// query arrived on (local), else the VNet whose address space holds the
// source address (remote) by longest prefix, else PublicView (D4, D6).
func (s *Snapshot) ViewOf(local, remote netip.Addr) int {
	if len(s.resolvers) > 0 {
		if i, ok := s.resolvers[local]; ok {
			return i
		}
	}
	return s.sources.lookup(remote)
}

// VNet returns the VNet of a given name, or nil.
func (s *Snapshot) VNet(name string) *VNetInfo { return s.vnetByName[name] }

// prefixTable is a longest-prefix-match table from IPv4 address to VNet
// index: one hash map per prefix length in use, probed from the longest.
// Where address spaces of different VNets overlap, the overlap maps to
// PublicView: only a resolver address can tell those clients apart (D4).
type prefixTable struct {
	lengths []int
	byLen   []map[uint32]int
}

type prefixEntry struct {
	prefix netip.Prefix
	vnet   int
}

func newPrefixTable(entries []prefixEntry) prefixTable {
	sort.Slice(entries, func(a, b int) bool {
		if c := entries[a].prefix.Addr().Compare(entries[b].prefix.Addr()); c != 0 {
			return c < 0
		}
		return entries[a].prefix.Bits() < entries[b].prefix.Bits()
	})
	value := map[netip.Prefix]int{}
	for _, e := range entries {
		if v, ok := value[e.prefix]; ok && v != e.vnet {
			value[e.prefix] = PublicView
			continue
		}
		value[e.prefix] = e.vnet
	}
	// An entry that contains a later one of another VNet makes the later one
	// ambiguous.
	for a := range entries {
		last := lastAddr(entries[a].prefix)
		for b := a + 1; b < len(entries) && !last.Less(entries[b].prefix.Addr()); b++ {
			if entries[b].vnet != entries[a].vnet {
				value[entries[b].prefix] = PublicView
			}
		}
	}
	var t prefixTable
	index := map[int]int{}
	for p, v := range value {
		i, ok := index[p.Bits()]
		if !ok {
			i = len(t.lengths)
			index[p.Bits()] = i
			t.lengths = append(t.lengths, p.Bits())
			t.byLen = append(t.byLen, map[uint32]int{})
		}
		t.byLen[i][addrUint(p.Addr())] = v
	}
	// Probe longest prefixes first.
	order := make([]int, len(t.lengths))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return t.lengths[order[a]] > t.lengths[order[b]] })
	lengths, byLen := make([]int, len(order)), make([]map[uint32]int, len(order))
	for i, o := range order {
		lengths[i], byLen[i] = t.lengths[o], t.byLen[o]
	}
	t.lengths, t.byLen = lengths, byLen
	return t
}

func (t prefixTable) lookup(a netip.Addr) int {
	if !a.Is4() {
		if !a.Is4In6() {
			return PublicView
		}
		a = a.Unmap()
	}
	u := addrUint(a)
	for i, bits := range t.lengths {
		mask := ^(^uint32(0) >> bits) // a shift by 32 is 0 in Go, so /32 masks all
		if v, ok := t.byLen[i][u&mask]; ok {
			return v
		}
	}
	return PublicView
}
