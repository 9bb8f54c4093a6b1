package topology

import "fmt"

// CheckTransition checks the rules that bind a change rather than a state: a
// server's access mode is fixed (T2); a subnet that holds a server keeps its
// CIDR and a server stays in its VNet and subnet (T10); an HA server's private
// DNS zone cannot change (Z3). Both topologies must be valid on their own.
func CheckTransition(old, next *Topology) Violations {
	var out Violations
	oldServers := make(map[string]*Server, len(old.Servers))
	for i := range old.Servers {
		oldServers[old.Servers[i].Name] = &old.Servers[i]
	}
	occupied := map[[2]string]string{} // vnet, subnet -> a server in it
	for _, s := range old.Servers {
		if s.Network != nil {
			occupied[[2]string{s.Network.VNet, s.Network.Subnet}] = s.Name
		}
	}
	for i, s := range next.Servers {
		was := oldServers[s.Name]
		if was == nil {
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
	oldCIDR := map[[2]string]string{}
	for _, vn := range old.VNets {
		for _, sn := range vn.Subnets {
			oldCIDR[[2]string{vn.Name, sn.Name}] = sn.CIDR
		}
	}
	for i, vn := range next.VNets {
		for j, sn := range vn.Subnets {
			key := [2]string{vn.Name, sn.Name}
			was, ok := oldCIDR[key]
			if holder := occupied[key]; ok && holder != "" && was != sn.CIDR {
				out = append(out, Violation{Rule: "T10", Path: fmt.Sprintf("vnets.%d.subnets.%d.cidr", i, j),
					Object: fmt.Sprintf("subnet %q in vnet %q", sn.Name, vn.Name), Field: "cidr",
					Message: fmt.Sprintf("the CIDR %s cannot change while the subnet holds server %q", was, holder)})
			}
		}
	}
	return out
}
