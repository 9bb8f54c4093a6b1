package topology

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Access decisions of the gateway.
const (
	Allowed          = "allowed"
	DeniedFirewall   = "denied_firewall" // a public server's rules do not cover the client (G5)
	DeniedPrivate    = "denied_private"  // a private server, a client outside its VNet and peers (G6, T3)
	DeniedNoSuchName = "denied_unknown_server"
)

// ipRange is an inclusive range of IPv4 addresses.
type ipRange struct{ lo, hi uint32 }

// access is what the gateway needs to admit a client to a server, computed
// once per snapshot.
type access struct {
	rules      []ipRange
	allowCloud bool // the 0.0.0.0 rule is present (F3)
}

// TLSPolicy is a server's TLS parameters (G4).
type TLSPolicy struct {
	RequireSecureTransport bool
	// MinVersion and MaxVersion are "TLSv1", "TLSv1.1", "TLSv1.2" or
	// "TLSv1.3"; MaxVersion "" means no upper bound.
	MinVersion, MaxVersion string
}

// Defaults of the TLS parameters.
const (
	DefaultSSLMinProtocolVersion = "TLSv1.2"
)

func newTLSPolicy(params map[string]string) TLSPolicy {
	p := TLSPolicy{RequireSecureTransport: true, MinVersion: DefaultSSLMinProtocolVersion}
	if v, ok := params[ParamRequireSecureTransport]; ok {
		p.RequireSecureTransport, _ = parseOnOff(v)
	}
	if v := params[ParamSSLMinProtocolVersion]; v != "" {
		p.MinVersion = v
	}
	p.MaxVersion = params[ParamSSLMaxProtocolVersion]
	return p
}

// buildCloud computes the ranges the 0.0.0.0 rule admits: every VNet address
// space and the datacenter ranges (F3). Each server's own ranges are its
// ServerInfo's (buildAccess).
func (s *Snapshot) buildCloud() {
	var cloud []ipRange
	for _, v := range s.VNets {
		for _, p := range v.Spaces {
			cloud = append(cloud, prefixRange(p))
		}
	}
	for _, r := range s.Topology.DatacenterRanges {
		if p, problem := parseIPv4Prefix(r); problem == "" {
			cloud = append(cloud, prefixRange(p))
		}
	}
	s.cloud = mergeRanges(cloud)
}

// buildAccess derives a server's policies from its parameters and rules.
func (si *ServerInfo) buildAccess() {
	for _, r := range si.Server.FirewallRules {
		start, _ := parseIPv4(r.StartIPAddress)
		end, _ := parseIPv4(r.EndIPAddress)
		if start == netip.IPv4Unspecified() && end == netip.IPv4Unspecified() {
			si.access.allowCloud = true
			continue
		}
		si.access.rules = append(si.access.rules, ipRange{addrUint(start), addrUint(end)})
	}
	si.access.rules = mergeRanges(si.access.rules)
}

// Admit decides whether a client address may connect to a server: a public
// server by its firewall rules (G5, F3), a private server only from its own
// VNet and directly peered VNets (G6, T3). It returns Allowed or the
// decision that refused.
func (s *Snapshot) Admit(si *ServerInfo, client netip.Addr) string {
	client = client.Unmap()
	if !client.Is4() {
		if si.Private {
			return DeniedPrivate
		}
		return DeniedFirewall
	}
	if si.Private {
		v := s.sources.lookup(client)
		if v == PublicView || (v != si.VNet.Index && !si.VNet.Peers[v]) {
			return DeniedPrivate
		}
		return Allowed
	}
	u := addrUint(client)
	if inRanges(si.access.rules, u) || (si.access.allowCloud && inRanges(s.cloud, u)) {
		return Allowed
	}
	return DeniedFirewall
}

// ServerForHost finds the server a TLS server name designates:
// NAME.postgres.database.azure.com, or NAME.<its private zone>. Case and a
// final dot are ignored. It returns nil when the name designates none.
func (s *Snapshot) ServerForHost(host string) *ServerInfo {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	label, rest, ok := strings.Cut(host, ".")
	if !ok {
		return nil
	}
	si := s.Server(label)
	switch {
	case si == nil:
		return nil
	case rest == Apex:
		return si
	case si.Zone != nil && rest == si.Zone.Name:
		return si
	}
	return nil
}

// AddressSpaceHint describes the ranges that admit a client to a private
// server, for error messages.
func (s *Snapshot) AddressSpaceHint(si *ServerInfo) string {
	if !si.Private {
		return ""
	}
	names := []string{si.VNet.Name}
	for peer := range si.VNet.Peers {
		names = append(names, s.VNets[peer].Name)
	}
	sort.Strings(names[1:])
	var spaces []string
	for _, n := range names {
		for _, p := range s.vnetByName[n].Spaces {
			spaces = append(spaces, fmt.Sprintf("%s (%s)", p, n))
		}
	}
	return strings.Join(spaces, ", ")
}

func prefixRange(p netip.Prefix) ipRange {
	return ipRange{addrUint(p.Addr()), addrUint(lastAddr(p))}
}

// mergeRanges sorts ranges and joins the ones that touch or overlap.
func mergeRanges(rs []ipRange) []ipRange {
	if len(rs) == 0 {
		return nil
	}
	sort.Slice(rs, func(a, b int) bool { return rs[a].lo < rs[b].lo })
	out := []ipRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi || (last.hi != ^uint32(0) && r.lo == last.hi+1) {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// inRanges reports whether u lies in one of the sorted, disjoint ranges.
func inRanges(rs []ipRange, u uint32) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].hi >= u })
	return i < len(rs) && rs[i].lo <= u
}
