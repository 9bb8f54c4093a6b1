package topology

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/pgplane/pgplane/internal/layermap"
)

// A run-time change that touches only servers (a server, its firewall rules,
// its parameters: the changes an operator makes most) is applied by the
// functions here at the cost of what it touches: the changed servers are
// laid over, checked and indexed again, and everything else is shared with
// the snapshot before. Their results are those of Overlay, Validate,
// CheckTransition and NewSnapshot on the whole topology
// (FuzzServerChangesMatchFullRebuild).

// ServerChanges returns the names of the servers a run-time change touches,
// sorted, and whether it touches nothing else.
func ServerChanges(changes map[string]json.RawMessage) ([]string, bool) {
	seen := map[string]bool{}
	for key := range changes {
		k, ok := ParseKey(key)
		if !ok || k.Kind != KindServer || k.ChildKind != "" && k.ChildKind != KindFirewallRule && k.ChildKind != KindParameter {
			return nil, false
		}
		seen[k.Name] = true
	}
	return slices.Sorted(maps.Keys(seen)), true
}

// ServerValues returns, for a function of OverlayServers, each server's
// run-time values picked from the whole map of them (a scan per server).
func ServerValues(values map[string]json.RawMessage) func(server string) map[string]json.RawMessage {
	return func(name string) map[string]json.RawMessage {
		mine := map[string]json.RawMessage{}
		key := ServerKey(name)
		for k, v := range values {
			if k == key || strings.HasPrefix(k, key+"/") {
				mine[k] = v
			}
		}
		return mine
	}
}

// OverlayServers returns cur with the named servers laid over again from
// base and the run-time values, placed where Overlay(base, values) places
// them: a server of the file where the file has it, a server made at run
// time after the file's, in name order. cur must be Overlay(base, values)
// for the values before the change. It reports false when a server cannot
// be placed without the whole overlay: a server of the file that cur does
// not serve (new to the file, or a run-time deletion of it undone), when
// filePos is nil. inCur, if not nil, finds a server of cur
// by name (a snapshot's index, which must hold exactly cur's names), so
// that its place is found by comparing pointers rather than every name, and
// a new server's absence without a scan. valuesOf returns a server's
// run-time values: its key's and those below it (ServerValues picks them
// from a map of every value). filePos, if not nil, gives a file server's
// position among the file's servers (-1: not the file's): a server's place
// is then found by bisection on the order Overlay keeps rather than by a
// scan, and the delta keeps it for ValidateServers. When base is not the
// file cur was laid over (an edit of the file's servers), names must list
// the servers base no longer holds first: bisection needs every server in
// the list to rank by base.
func OverlayServers(base, cur *Topology, inBase, inCur func(string) *Server, filePos func(string) int, valuesOf func(server string) map[string]json.RawMessage, names []string) (*ServerDelta, []OverlayProblem, bool) {
	next := *cur // its server list is shared until a server changes: Set, Insert and Delete copy what they touch
	d := &ServerDelta{Topology: &next, Names: names, Before: map[string]*Server{}, After: map[string]*Server{}, FilePos: filePos}
	var problems []OverlayProblem
	for _, name := range names {
		mine := valuesOf(name)
		from := &Topology{}
		fileServer := inBase(name)
		if fileServer != nil {
			from.Servers = NewServerList(fileServer)
		}
		laid, ps := Overlay(from, mine)
		problems = append(problems, ps...)
		var now *Server
		if laid.Servers.Len() == 1 {
			now = laid.Servers.At(0)
		}
		at := -1
		var p *Server
		if inCur != nil {
			p = inCur(name)
		}
		if p != nil {
			at = d.place(p)
		}
		if inCur == nil || p != nil && at < 0 {
			// No index, or one whose server is another copy: by name.
			at = next.Servers.IndexFunc(func(s *Server) bool { return s.Name == name })
		}
		if at >= 0 {
			d.Before[name] = next.Servers.At(at)
		}
		d.After[name] = now
		switch {
		case at >= 0 && now != nil:
			next.Servers = next.Servers.Set(at, now)
		case at >= 0:
			next.Servers = next.Servers.Delete(at)
		case now == nil:
		case fileServer != nil:
			// A server of the file not served yet (added to the file, or
			// its deletion at run time undone): among the file's servers
			// at its place in the file, found by bisection on the order
			// Overlay keeps (those made at run time rank last).
			pos := -1
			if filePos != nil {
				pos = filePos(name)
			}
			if pos < 0 {
				return nil, nil, false
			}
			at := next.Servers.Search(0, func(s *Server) bool { p := filePos(s.Name); return p < 0 || p > pos })
			next.Servers = next.Servers.Insert(at, now)
		default:
			// After the file's servers, among those made at run time, in
			// name order. The file's come first: the boundary is found by
			// bisection, not by walking every server made at run time.
			tail := next.Servers.Search(0, func(s *Server) bool { return inBase(s.Name) == nil })
			at := next.Servers.Search(tail, func(s *Server) bool { return s.Name >= name })
			next.Servers = next.Servers.Insert(at, now)
		}
	}
	return d, problems, true
}

// ServerDelta is a change of servers alone, laid over a topology: the
// topology after it, and each named server before and after (nil: absent).
type ServerDelta struct {
	Topology      *Topology
	Names         []string
	Before, After map[string]*Server
	// From, if set, is the snapshot of the topology the change was laid
	// over, and FilePos gives the position of a server of the file among
	// the file's servers (-1: one made at run time). With both,
	// ValidateServers finds the servers that share the changed servers'
	// subnets in From's index and their places by bisection, at the cost
	// of those servers, instead of a pass over every server.
	From    *Snapshot
	FilePos func(name string) int
}

// place returns s's position in the delta's topology, or -1: found by
// bisection on the order Overlay keeps (the file's servers in the file's
// order, then those made at run time by name) when FilePos is set, else
// (or if it is not where that order puts it) by a scan.
func (d *ServerDelta) place(s *Server) int {
	rank := func(x *Server) int {
		if p := d.FilePos(x.Name); p >= 0 {
			return p
		}
		return math.MaxInt
	}
	list := d.Topology.Servers
	if d.FilePos == nil {
		return list.Index(s)
	}
	r := rank(s)
	i := list.Search(0, func(x *Server) bool {
		xr := rank(x)
		return xr > r || xr == r && x.Name >= s.Name
	})
	if i < list.Len() && list.At(i) == s {
		return i
	}
	return list.Index(s)
}

// CheckServers is CheckTransition for a change of servers alone made from
// s's topology: the rules that bind a change (T2, T10, Z3, D10) for each
// changed server, against the zones it leaves or joins and nothing else.
func (s *Snapshot) CheckServers(d *ServerDelta) Violations {
	var was, now []*Server
	var zones []PrivateDNSZone
	seen := map[string]bool{}
	for _, n := range d.Names {
		for _, srv := range []*Server{d.Before[n], d.After[n]} {
			if srv == nil || srv.Network == nil {
				continue
			}
			name := CanonicalZone(srv.Network.PrivateDNSZone)
			if z := s.Zones[name]; z != nil && !seen[name] {
				seen[name] = true
				zones = append(zones, PrivateDNSZone{Name: z.Name, Lock: z.Lock})
			}
		}
		if b := d.Before[n]; b != nil {
			was = append(was, b)
		}
		if a := d.After[n]; a != nil {
			now = append(now, a)
		}
	}
	return CheckTransition(&Topology{PrivateDNSZones: zones, Servers: NewServerList(was...)}, &Topology{PrivateDNSZones: zones, Servers: NewServerList(now...)})
}

// WithServers returns the snapshot of a change of servers alone made from
// s's topology, with a new serial: it shares everything with s but
// the named servers' entries and the private zones they leave or join. The
// zones whose records changed are listed in the snapshot's Change.
func (s *Snapshot) WithServers(d *ServerDelta, serial uint32) (*Snapshot, error) {
	return s.withServers(d, s.State, serial, nil, nil)
}

// WithState returns the snapshot of s's topology in a new run-time state: a
// failover decision. Only the servers whose failover changed (and their
// private zones' records) are indexed again, and on a region's gateway
// flip the region and its servers (Change.Regions names the regions).
func (s *Snapshot) WithState(st State, serial uint32) (*Snapshot, error) {
	d := &ServerDelta{Topology: s.Topology, Before: map[string]*Server{}, After: map[string]*Server{}}
	for _, failed := range []map[string]bool{s.State.FailedOver, st.FailedOver} {
		for name := range failed {
			si := s.Server(name)
			if si == nil || s.State.FailedOver[name] == st.FailedOver[name] || slices.Contains(d.Names, name) {
				continue
			}
			d.Names = append(d.Names, name)
			d.Before[name], d.After[name] = si.Server, si.Server
		}
	}
	// A region whose active gateway address changed gets a RegionInfo of
	// its own, and its servers, which point at it, are indexed again.
	var (
		flipped []string
		regions map[string]*RegionInfo
	)
	for name, ri := range s.Regions {
		active := st.ActiveGateway[name]
		if s.State.ActiveGateway[name] == active {
			continue
		}
		if active < 0 || active >= len(ri.Gateways) {
			return nil, fmt.Errorf("region %q: active gateway index %d out of range", name, active)
		}
		if regions == nil {
			regions = maps.Clone(s.Regions)
		}
		cp := *ri
		cp.Active = ri.Gateways[active]
		regions[name] = &cp
		flipped = append(flipped, name)
	}
	if len(flipped) > 0 {
		slices.Sort(flipped)
		for _, chunk := range s.Topology.Servers.Chunks() {
			for _, srv := range chunk {
				if _, listed := d.After[srv.Name]; !listed && slices.Contains(flipped, srv.Region) {
					d.Names = append(d.Names, srv.Name)
					d.Before[srv.Name], d.After[srv.Name] = srv, srv
				}
			}
		}
	}
	slices.Sort(d.Names)
	return s.withServers(d, st, serial, regions, flipped)
}

// withServers indexes the servers d names again in a copy of s with state
// st; regions, if not nil, replace s's (flipped names the regions whose
// active gateway changed).
func (s *Snapshot) withServers(d *ServerDelta, st State, serial uint32, regions map[string]*RegionInfo, flipped []string) (*Snapshot, error) {
	next := *s
	next.Topology, next.Serial, next.State = d.Topology, serial, st
	if regions != nil {
		next.Regions = regions
	}
	names, byName := d.Names, d.After
	zones := map[string]bool{} // zones whose records change
	for _, n := range names {
		if was := s.Server(n); was != nil && was.Private {
			zones[was.Zone.Name] = true
		}
		if srv := byName[n]; srv != nil && srv.Access == AccessPrivate && srv.Network != nil {
			zones[CanonicalZone(srv.Network.PrivateDNSZone)] = true
		}
	}
	set := map[string]*ServerInfo{} // the servers indexed again
	var deleted []string
	for _, n := range names {
		srv := byName[n]
		if srv == nil {
			deleted = append(deleted, n)
			continue
		}
		si, err := next.newServerInfo(srv)
		if err != nil {
			return nil, err
		}
		si.buildAccess()
		set[n] = si
	}
	next.servers = s.servers.With(set, deleted)
	next.subnets = s.subnetsWith(names, byName)
	next.Change = &Change{From: s.Serial, Servers: names, Zones: slices.Sorted(maps.Keys(zones)), Regions: flipped}
	return &next, nil
}

// subnetsWith returns s's subnet index with the named servers moved to the
// subnets they are in now (byName; nil: deleted), copying only the member
// lists of the subnets they leave or join.
func (s *Snapshot) subnetsWith(names []string, byName map[string]*Server) layermap.Map[[]string] {
	touched := map[string][]string{}
	members := func(k string) []string {
		if m, ok := touched[k]; ok {
			return m
		}
		m, _ := s.subnets.Get(k)
		return slices.Clone(m)
	}
	for _, n := range names {
		if was := s.Server(n); was != nil && was.Server.Network != nil {
			k := subnetKey(was.Server.Network.VNet, was.Server.Network.Subnet)
			touched[k] = slices.DeleteFunc(members(k), func(m string) bool { return m == n })
		}
		if now := byName[n]; now != nil && now.Network != nil {
			k := subnetKey(now.Network.VNet, now.Network.Subnet)
			touched[k] = append(members(k), n)
		}
	}
	set := map[string][]string{}
	var empty []string
	for k, m := range touched {
		if len(m) == 0 {
			empty = append(empty, k)
		} else {
			set[k] = m
		}
	}
	return s.subnets.With(set, empty)
}

// Change says how a snapshot differs from the one before it, when it was
// made from it by a change of servers alone (WithServers): readers that
// index snapshots (the DNS answers) can then index only what changed.
type Change struct {
	From    uint32   // the serial of the snapshot before
	Servers []string // changed, added or deleted
	Zones   []string // private zones whose records changed
	Regions []string // regions whose active gateway address changed
}
