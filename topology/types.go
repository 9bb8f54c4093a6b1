// Package topology is pgplane's data model: the objects of a managed PostgreSQL
// service (regions, virtual networks, subnets, private DNS zones, servers and
// their firewall rules), the validation of every rule SPEC.md gives them, the
// loader of the topology file, and immutable snapshots with the fast lookups the
// DNS service and the gateway need on their hot paths.
//
// The package imports none of pgplane's other packages and nothing of CoreDNS.
package topology

import (
	"slices"
)

// Topology is the desired state of the service, as written in the topology
// file. Field names follow Azure's resource JSON. Addresses are kept as the
// strings the operator wrote so that a validation error can quote them.
type Topology struct {
	// DatacenterRanges are the IPv4 ranges that the 0.0.0.0 firewall rule
	// admits besides every VNet address space (F3).
	DatacenterRanges []string         `yaml:"datacenterRanges,omitempty" json:"datacenterRanges,omitempty"`
	Regions          []Region         `yaml:"regions,omitempty" json:"regions,omitempty"`
	VNets            []VNet           `yaml:"vnets,omitempty" json:"vnets,omitempty"`
	PrivateDNSZones  []PrivateDNSZone `yaml:"privateDnsZones,omitempty" json:"privateDnsZones,omitempty"`
	Servers          ServerList       `yaml:"servers,omitempty" json:"servers,omitzero"`
}

// Region is a cloud region with its gateway addresses: primary, secondary and
// an optional tertiary. Exactly one of them is active at a time (T1).
type Region struct {
	Name     string      `yaml:"name" json:"name"`
	Gateways GatewayList `yaml:"gateways" json:"gateways"`
}

// VNet is a virtual network: the clients inside its address spaces share one
// DNS view (D4).
type VNet struct {
	Name          string   `yaml:"name" json:"name"`
	Region        string   `yaml:"region" json:"region"`
	AddressSpaces []string `yaml:"addressSpaces" json:"addressSpaces"`
	// ResolverAddress is an optional inbound resolver address of this VNet's
	// own: a query arriving on it is answered in this VNet's view whatever its
	// source address (D4).
	ResolverAddress string `yaml:"resolverAddress,omitempty" json:"resolverAddress,omitempty"`
	// Peerings name the VNets this one is peered with. A peering listed on
	// either side connects both. Peering gives reachability, never name
	// resolution (D5).
	Peerings []string `yaml:"peerings,omitempty" json:"peerings,omitempty"`
	// DNSServers is the VNet's custom DNS server list; empty means
	// Azure-provided DNS (the 168.63.129.16 resolver).
	DNSServers []string `yaml:"dnsServers,omitempty" json:"dnsServers,omitempty"`
	Subnets    []Subnet `yaml:"subnets,omitempty" json:"subnets,omitempty"`
}

// Subnet is an address range inside a VNet.
type Subnet struct {
	Name       string `yaml:"name" json:"name"`
	CIDR       string `yaml:"cidr" json:"cidr"`
	Delegation string `yaml:"delegation,omitempty" json:"delegation,omitempty"`
}

// PrivateDNSZone is a private zone below postgres.database.azure.com. Its
// records are visible only to clients in the VNets linked to it.
type PrivateDNSZone struct {
	Name  string   `yaml:"name" json:"name"`
	Links []string `yaml:"links,omitempty" json:"links,omitempty"`
	Lock  string   `yaml:"lock,omitempty" json:"lock,omitempty"`
}

// Server is a PostgreSQL flexible server.
type Server struct {
	Name   string `yaml:"name" json:"name"`
	Region string `yaml:"region" json:"region"`
	// Access is "public" or "private", fixed at creation (T2).
	Access           string            `yaml:"access" json:"access"`
	Network          *Network          `yaml:"network,omitempty" json:"network,omitempty"`
	HighAvailability bool              `yaml:"highAvailability,omitempty" json:"highAvailability,omitempty"`
	Addresses        *Addresses        `yaml:"addresses,omitempty" json:"addresses,omitempty"`
	Backends         Backends          `yaml:"backends" json:"backends"`
	Parameters       map[string]string `yaml:"parameters,omitempty" json:"parameters,omitempty"`
	FirewallRules    []FirewallRule    `yaml:"firewallRules,omitempty" json:"firewallRules,omitempty"`
}

// Network places a private server in a VNet's subnet and names the private
// DNS zone that holds its record.
type Network struct {
	VNet           string `yaml:"vnet" json:"vnet"`
	Subnet         string `yaml:"subnet" json:"subnet"`
	PrivateDNSZone string `yaml:"privateDnsZone" json:"privateDnsZone"`
}

// Addresses are the private addresses DNS gives out for a private server.
type Addresses struct {
	Primary string `yaml:"primary" json:"primary"`
	Standby string `yaml:"standby,omitempty" json:"standby,omitempty"`
}

// Backends are the host:port addresses where the server's PostgreSQL runs.
type Backends struct {
	Primary string `yaml:"primary" json:"primary"`
	Standby string `yaml:"standby,omitempty" json:"standby,omitempty"`
}

// FirewallRule admits client addresses from StartIPAddress to EndIPAddress,
// both included, to a public server.
type FirewallRule struct {
	Name           string `yaml:"name" json:"name"`
	StartIPAddress string `yaml:"startIpAddress" json:"startIpAddress"`
	EndIPAddress   string `yaml:"endIpAddress" json:"endIpAddress"`
}

// Access modes of a server.
const (
	AccessPublic  = "public"
	AccessPrivate = "private"
)

// Zone locks.
const (
	LockNone         = "none"
	LockCanNotDelete = "CanNotDelete"
	LockReadOnly     = "ReadOnly"
)

// DelegationFlexibleServers is the subnet delegation that flexible servers need.
const DelegationFlexibleServers = "Microsoft.DBforPostgreSQL/flexibleServers"

// Server parameters that pgplane enforces (G4).
const (
	ParamRequireSecureTransport = "require_secure_transport"
	ParamSSLMinProtocolVersion  = "ssl_min_protocol_version"
	ParamSSLMaxProtocolVersion  = "ssl_max_protocol_version"
	// ParamAuthRole names the role the gateway looks this server's password
	// verifiers up with, in place of the Corefile's gateway_auth_user (G7).
	// Its password is in the gateway's password file, never in the topology.
	ParamAuthRole = "pgplane.auth_role"
)

// Apex is the zone pgplane is authoritative for, without the final dot.
const Apex = "postgres.database.azure.com"

// ControlLabel is the label below Apex that holds the regions' gateway names,
// REGION.control.postgres.database.azure.com. No private zone may use it.
const ControlLabel = "control"

// CertificateNames are the DNS names the gateway's certificate must cover
// for t: every server's public name, and the names in every private zone
// (a client with sslmode=verify-full may connect by either).
func CertificateNames(t *Topology) []string {
	zones := make([]string, 0, len(t.PrivateDNSZones))
	for _, z := range t.PrivateDNSZones {
		zones = append(zones, "*."+CanonicalZone(z.Name))
	}
	slices.Sort(zones)
	return append([]string{"*." + Apex}, slices.Compact(zones)...)
}

// shareNames points the strings of servers that name a region, VNet,
// subnet, private DNS zone or access mode at t's own copy of that name: a
// topology file of 100,000 servers otherwise holds each of them once per
// server. (unique.Make did this before, but drops an entry at the next
// collection once no handle holds it, so a large file kept many copies.)
func shareNames(t *Topology, servers []*Server) {
	names := map[string]string{AccessPublic: AccessPublic, AccessPrivate: AccessPrivate}
	for _, r := range t.Regions {
		names[r.Name] = r.Name
	}
	for _, v := range t.VNets {
		names[v.Name] = v.Name
		for _, sn := range v.Subnets {
			names[sn.Name] = sn.Name
		}
	}
	for _, z := range t.PrivateDNSZones {
		names[z.Name] = z.Name
	}
	share := func(s *string) {
		if c, ok := names[*s]; ok {
			*s = c
		}
	}
	for _, s := range servers {
		share(&s.Region)
		share(&s.Access)
		if n := s.Network; n != nil {
			share(&n.VNet)
			share(&n.Subnet)
			share(&n.PrivateDNSZone)
		}
	}
}
