package topology

import (
	"fmt"
	"strings"
)

// CheckTransition checks the rules that bind a change rather than a state: a
// server's access mode is fixed (T2); a subnet that holds a server keeps its
// CIDR, a server stays in its VNet and subnet, and a VNet, subnet or zone a
// server uses is not deleted under it (T10, in-use); an HA server's private
// DNS zone cannot change (Z3); a locked zone is not deleted, and a ReadOnly
// one keeps its links and records (lock, D10). The file and the admin API
// both apply it, so they refuse the same changes with the same words (A2).
// old must be valid; next need not be, and its rule violations are
// Validate's to report.
func CheckTransition(old, next *Topology) Violations {
	out := lockedZones(old, next)
	out = append(out, removedInUse(old, next)...)
	// A change of VNets, subnets or zones alone shares the server list:
	// no server changed, so none moved, changed access or zone, or
	// changed a locked zone's records, and the passes over every server
	// are skipped (at 100,000 servers they were most of a VNet change's
	// check).
	sameServers := old.Servers.Same(next.Servers)
	if !sameServers {
		out = append(out, serverTransitions(old, next)...)
		out = append(out, lockedRecords(old, next)...)
	}
	var occupied map[[2]string]string // vnet, subnet -> a server in it; made when asked
	holder := func(key [2]string) string {
		if occupied == nil {
			occupied = map[[2]string]string{}
			for _, s := range old.Servers.All() {
				if s.Network != nil {
					occupied[[2]string{s.Network.VNet, s.Network.Subnet}] = s.Name
				}
			}
		}
		return occupied[key]
	}
	oldCIDR := map[[2]string]string{}
	for _, vn := range old.VNets {
		for _, sn := range vn.Subnets {
			oldCIDR[[2]string{vn.Name, sn.Name}] = sn.CIDR
		}
	}
	for i, vn := range next.VNets {
		for j, sn := range vn.Subnets {
			key := [2]string{vn.Name, sn.Name}
			if was, ok := oldCIDR[key]; ok && was != sn.CIDR {
				if h := holder(key); h != "" {
					out = append(out, Violation{Rule: "T10", Path: fmt.Sprintf("vnets.%d.subnets.%d.cidr", i, j),
						Object: fmt.Sprintf("subnet %q in vnet %q", sn.Name, vn.Name), Field: "cidr",
						Message: fmt.Sprintf("the CIDR %s cannot change while the subnet holds server %q", was, h)})
				}
			}
		}
	}
	return out
}

// serverTransitions refuses what a server may not change (T2, T10, Z3).
// The lists are compared place by place first: servers are shared between
// topologies, so an unchanged server is the same pointer at the same place,
// and the servers are found by name only past a place where they differ.
func serverTransitions(old, next *Topology) Violations {
	olds := old.Servers.Slice()
	var byName map[string]*Server
	before := func(i int, name string) *Server {
		if i < len(olds) && olds[i].Name == name {
			return olds[i]
		}
		if byName == nil {
			byName = make(map[string]*Server, len(olds))
			for _, s := range olds {
				byName[s.Name] = s
			}
		}
		return byName[name]
	}
	var out Violations
	for i, s := range next.Servers.All() {
		if i < len(olds) && olds[i] == s {
			continue
		}
		was := before(i, s.Name)
		if was == nil || was == s {
			continue
		}
		path := fmt.Sprintf("servers.%d", i)
		obj := fmt.Sprintf("server %q", s.Name)
		if was.Access != s.Access {
			out = append(out, Violation{Rule: "T2", Path: path + ".access", Object: obj, Field: "access",
				Message: fmt.Sprintf("access is %s and is fixed at creation; to change it, create a new server", was.Access)})
			continue
		}
		if was.Network == nil || s.Network == nil {
			continue
		}
		if was.Network.VNet != s.Network.VNet || was.Network.Subnet != s.Network.Subnet {
			out = append(out, Violation{Rule: "T10", Path: path + ".network", Object: obj, Field: "network",
				Message: fmt.Sprintf("the server is in vnet %q subnet %q and cannot move to another VNet or subnet", was.Network.VNet, was.Network.Subnet)})
		}
		if CanonicalZone(was.Network.PrivateDNSZone) != CanonicalZone(s.Network.PrivateDNSZone) && (was.HighAvailability || s.HighAvailability) {
			out = append(out, Violation{Rule: "Z3", Path: path + ".network.privateDnsZone", Object: obj, Field: "network.privateDnsZone",
				Message: fmt.Sprintf("the private DNS zone cannot change from %q while high availability is on; disable HA first", was.Network.PrivateDNSZone)})
		}
	}
	return out
}

// lockedRecords refuses a change of the records of a private DNS zone that
// is locked ReadOnly in both topologies (D10): a server added to it, removed
// from it, or given another address.
func lockedRecords(old, next *Topology) Violations {
	locked := map[string]bool{}
	for _, z := range old.PrivateDNSZones {
		if z.Lock == LockReadOnly {
			locked[CanonicalZone(z.Name)] = true
		}
	}
	nextLocked := map[string]bool{}
	for _, z := range next.PrivateDNSZones {
		if z.Lock == LockReadOnly && locked[CanonicalZone(z.Name)] {
			nextLocked[CanonicalZone(z.Name)] = true
		}
	}
	if len(nextLocked) == 0 {
		return nil
	}
	records := func(t *Topology) map[string]string {
		r := map[string]string{}
		for _, s := range t.Servers.All() {
			if s.Network == nil || s.Addresses == nil || !nextLocked[CanonicalZone(s.Network.PrivateDNSZone)] {
				continue
			}
			r[s.Name] = CanonicalZone(s.Network.PrivateDNSZone) + " " + s.Addresses.Primary + " " + s.Addresses.Standby
		}
		return r
	}
	was, now := records(old), records(next)
	var out Violations
	for i, s := range next.Servers.All() {
		if s.Network == nil || !nextLocked[CanonicalZone(s.Network.PrivateDNSZone)] || was[s.Name] == now[s.Name] {
			continue
		}
		out = append(out, Violation{Rule: "D10", Path: fmt.Sprintf("servers.%d.network.privateDnsZone", i), Object: fmt.Sprintf("server %q", s.Name),
			Field: "network.privateDnsZone", Message: fmt.Sprintf("private DNS zone %q is locked ReadOnly: its records cannot change; set its lock to none first", s.Network.PrivateDNSZone)})
	}
	for name, rec := range was {
		if _, ok := now[name]; !ok {
			zone, _, _ := strings.Cut(rec, " ")
			out = append(out, Violation{Rule: "D10", Path: "servers", Object: fmt.Sprintf("server %q", name), Field: "servers",
				Message: fmt.Sprintf("the server's record is in private DNS zone %q, which is locked ReadOnly: it cannot be removed; set the zone's lock to none first", zone)})
		}
	}
	return out
}

// removedInUse refuses the deletion of a VNet, subnet or private DNS zone
// that a server still uses, once per object, at the first server using it.
func removedInUse(old, next *Topology) Violations {
	// An object a server can use: a VNet, a subnet of a VNet, or a zone.
	type object struct{ kind, name, sub string }
	has := map[object]bool{}
	for _, vn := range next.VNets {
		has[object{"vnet", vn.Name, ""}] = true
		for _, sn := range vn.Subnets {
			has[object{"subnet", vn.Name, sn.Name}] = true
		}
	}
	for _, z := range next.PrivateDNSZones {
		has[object{"zone", CanonicalZone(z.Name), ""}] = true
	}
	had := map[object]bool{} // what old has and next has not
	for _, vn := range old.VNets {
		if o := (object{"vnet", vn.Name, ""}); !has[o] {
			had[o] = true
		}
		for _, sn := range vn.Subnets {
			if o := (object{"subnet", vn.Name, sn.Name}); !has[o] {
				had[o] = true
			}
		}
	}
	for _, z := range old.PrivateDNSZones {
		if o := (object{"zone", CanonicalZone(z.Name), ""}); !has[o] {
			had[o] = true
		}
	}
	if len(had) == 0 {
		return nil // nothing a server could use was deleted
	}
	var out Violations
	reported := map[object]bool{}
	for i, s := range next.Servers.All() {
		n := s.Network
		if n == nil {
			continue
		}
		for _, use := range [3]object{{"vnet", n.VNet, ""}, {"subnet", n.VNet, n.Subnet}, {"zone", CanonicalZone(n.PrivateDNSZone), ""}} {
			if !had[use] || reported[use] {
				continue
			}
			reported[use] = true
			var rule, obj, field string
			switch use.kind {
			case "vnet":
				rule, obj, field = "T10", fmt.Sprintf("vnet %q", n.VNet), "vnet"
			case "subnet":
				if reported[object{"vnet", n.VNet, ""}] {
					continue // the VNet's deletion says it
				}
				rule, obj, field = "T10", fmt.Sprintf("subnet %q in vnet %q", n.Subnet, n.VNet), "subnet"
			default:
				rule, obj, field = "in-use", fmt.Sprintf("private DNS zone %q", n.PrivateDNSZone), "privateDnsZone"
			}
			out = append(out, Violation{Rule: rule, Path: fmt.Sprintf("servers.%d.network.%s", i, field), Object: obj,
				Message: fmt.Sprintf("server %q uses it; delete the server first", s.Name)})
		}
	}
	return out
}

// lockedZones refuses the deletion of a zone locked CanNotDelete or
// ReadOnly, and a change of a ReadOnly zone's links: a lock is lifted first,
// by a change of its own.
func lockedZones(old, next *Topology) Violations {
	nextZones := map[string]int{}
	for i, z := range next.PrivateDNSZones {
		nextZones[CanonicalZone(z.Name)] = i
	}
	var out Violations
	for _, z := range old.PrivateDNSZones {
		if z.Lock != LockCanNotDelete && z.Lock != LockReadOnly {
			continue
		}
		obj := fmt.Sprintf("private DNS zone %q", z.Name)
		lift := fmt.Sprintf("set its lock to none first (pgplanectl private-dns zone update --name %s --lock none)", z.Name)
		i, ok := nextZones[CanonicalZone(z.Name)]
		switch {
		case !ok:
			out = append(out, Violation{Rule: "lock", Path: "privateDnsZones", Object: obj, Field: "lock",
				Message: fmt.Sprintf("the zone is locked %s and cannot be deleted; %s", z.Lock, lift)})
		case z.Lock == LockReadOnly && !sameSet(z.Links, next.PrivateDNSZones[i].Links):
			out = append(out, Violation{Rule: "lock", Path: fmt.Sprintf("privateDnsZones.%d.links", i), Object: obj, Field: "links",
				Message: fmt.Sprintf("the zone is locked ReadOnly and its links cannot be changed; %s", lift)})
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := make(map[string]bool, len(a))
	for _, s := range a {
		in[s] = true
	}
	for _, s := range b {
		if !in[s] {
			return false
		}
	}
	return true
}
