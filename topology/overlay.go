package topology

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Run-time changes (the admin API's) are kept apart from the topology file, as
// an overlay of keyed objects: each key names one object and holds its JSON,
// or nothing when the object was deleted. Keys:
//
//	server/NAME                       a server, without its rules and parameters
//	server/NAME/firewallRule/RULE     one firewall rule of a server
//	server/NAME/parameter/PARAM       one server parameter (a JSON string)
//	vnet/NAME                         a VNet, without its subnets and peerings
//	vnet/NAME/subnet/SUBNET           one subnet
//	vnet/NAME/peering/OTHER           a peering (any JSON value; presence counts)
//	privateDnsZone/NAME               a private DNS zone and its lock, without links
//	privateDnsZone/NAME/link/VNET     a VNet link (presence counts)
//
// Rules, parameters, subnets, peerings and links are keys of their own so
// that two operators changing two rules of one server on two nodes at once
// both keep their change.

// Key kinds.
const (
	KindServer       = "server"
	KindFirewallRule = "firewallRule"
	KindParameter    = "parameter"
	KindVNet         = "vnet"
	KindSubnet       = "subnet"
	KindPeering      = "peering"
	KindZone         = "privateDnsZone"
	KindLink         = "link"
)

// ServerKey is the overlay key of a server.
func ServerKey(name string) string { return KindServer + "/" + name }

// FirewallRuleKey is the overlay key of a server's firewall rule.
func FirewallRuleKey(server, rule string) string {
	return ServerKey(server) + "/" + KindFirewallRule + "/" + rule
}

// ParameterKey is the overlay key of a server parameter.
func ParameterKey(server, param string) string {
	return ServerKey(server) + "/" + KindParameter + "/" + param
}

// VNetKey is the overlay key of a VNet.
func VNetKey(name string) string { return KindVNet + "/" + name }

// SubnetKey is the overlay key of a subnet.
func SubnetKey(vnet, subnet string) string { return VNetKey(vnet) + "/" + KindSubnet + "/" + subnet }

// PeeringKey is the overlay key of a VNet's peering with another.
func PeeringKey(vnet, other string) string { return VNetKey(vnet) + "/" + KindPeering + "/" + other }

// ZoneKey is the overlay key of a private DNS zone; the name is made canonical.
func ZoneKey(name string) string { return KindZone + "/" + CanonicalZone(name) }

// LinkKey is the overlay key of a zone's link to a VNet.
func LinkKey(zone, vnet string) string { return ZoneKey(zone) + "/" + KindLink + "/" + vnet }

// Key is an overlay key taken apart: the object's kind and name, and for a
// child (a rule, a parameter, a subnet, a peering, a link) its kind and
// name too.
type Key struct {
	Kind, Name       string
	ChildKind, Child string // empty for an object of its own
}

// ParseKey takes an overlay key apart; false when it has neither two nor
// four parts, or an empty name. The kinds are not checked.
func ParseKey(key string) (Key, bool) {
	parts := strings.Split(key, "/")
	switch {
	case len(parts) == 2 && parts[1] != "":
		return Key{Kind: parts[0], Name: parts[1]}, true
	case len(parts) == 4 && parts[1] != "" && parts[3] != "":
		return Key{Kind: parts[0], Name: parts[1], ChildKind: parts[2], Child: parts[3]}, true
	}
	return Key{}, false
}

// ServersTouched returns the names of the servers whose keys (the server's
// own, its rules' and parameters') a change holds.
func ServersTouched(changes map[string]json.RawMessage) map[string]bool {
	touched := map[string]bool{}
	for key := range changes {
		if k, ok := ParseKey(key); ok && k.Kind == KindServer {
			touched[k.Name] = true
		}
	}
	return touched
}

// Present is the value of a key whose presence is all it says (a peering, a link).
var Present = json.RawMessage(`{}`)

// ChildKeys returns the keys of the objects that belong to the object at key
// in t: a server's rules and parameters, a VNet's subnets and peerings, a
// zone's links. Deleting an object deletes these with it.
func ChildKeys(t *Topology, key string) []string {
	k, _ := ParseKey(key)
	kind, name := k.Kind, k.Name
	var out []string
	switch kind {
	case KindServer:
		for _, s := range t.Servers.All() {
			if s.Name == name {
				out = append(out, serverChildKeys(s)...)
			}
		}
	case KindVNet:
		for i := range t.VNets {
			if t.VNets[i].Name == name {
				out = append(out, vnetChildKeys(&t.VNets[i])...)
			}
		}
	case KindZone:
		for i := range t.PrivateDNSZones {
			if CanonicalZone(t.PrivateDNSZones[i].Name) == name {
				out = append(out, zoneChildKeys(&t.PrivateDNSZones[i])...)
			}
		}
	}
	return out
}

// OverlayProblem is an overlay entry that could not be applied: a key of an
// unknown kind or a value that does not decode. The entry is skipped.
type OverlayProblem struct {
	Key string
	Err error
}

// Error names the entry and what is wrong with it.
func (p OverlayProblem) Error() string { return fmt.Sprintf("run-time change %s: %v", p.Key, p.Err) }

// Overlay applies run-time changes to base and returns the result; base is
// not modified. A nil value deletes the object at its key, with everything
// that belongs to it. A change to a child whose parent does not exist is
// skipped, as is an entry that cannot be applied (reported in problems). The
// result is not validated: that is the caller's job.
func Overlay(base *Topology, changes map[string]json.RawMessage) (*Topology, []OverlayProblem) {
	t := &Topology{
		DatacenterRanges: base.DatacenterRanges,
		Regions:          base.Regions,
		VNets:            slices.Clone(base.VNets),
		PrivateDNSZones:  slices.Clone(base.PrivateDNSZones),
		Servers:          base.Servers, // immutable: shared until the overlay changes a server
	}
	if len(changes) == 0 {
		return t, nil
	}
	o := overlay{t: t, list: base.Servers.Slice(), servers: map[string]int{}, vnets: map[string]int{}, zones: map[string]int{}, owned: map[int]bool{}}
	for i, s := range o.list {
		o.servers[s.Name] = i
	}
	for i, vn := range t.VNets {
		o.vnets[vn.Name] = i
	}
	for i, z := range t.PrivateDNSZones {
		o.zones[CanonicalZone(z.Name)] = i
	}
	keys := slices.Collect(maps.Keys(changes))
	// Parents before children, then in key order, so every node builds the
	// same topology from the same changes.
	sort.Slice(keys, func(i, j int) bool {
		di, dj := strings.Count(keys[i], "/"), strings.Count(keys[j], "/")
		if di != dj {
			return di < dj
		}
		return keys[i] < keys[j]
	})
	var problems []OverlayProblem
	for _, k := range keys {
		if err := o.apply(k, changes[k]); err != nil {
			problems = append(problems, OverlayProblem{Key: k, Err: err})
		}
	}
	o.compact()
	t.Servers = NewServerList(o.list...)
	return t, problems
}

// overlay applies changes to a topology, with indexes by name. A deleted
// top-level object is marked with an empty name and removed by compact.
type overlay struct {
	t                     *Topology
	list                  []*Server // t's servers while the overlay changes them
	servers, vnets, zones map[string]int
	owned                 map[int]bool // servers copied by this overlay, free to change
	deleted               bool
}

func (o *overlay) apply(key string, value json.RawMessage) error {
	k, ok := ParseKey(key)
	if !ok {
		return fmt.Errorf("malformed key")
	}
	kind, name := k.Kind, k.Name
	if k.ChildKind == "" {
		switch kind {
		case KindServer:
			return o.server(name, value)
		case KindVNet:
			return o.vnet(name, value)
		case KindZone:
			return o.zone(name, value)
		}
		return fmt.Errorf("unknown kind %q", kind)
	}
	child, childName := k.ChildKind, k.Child
	switch kind + "/" + child {
	case KindServer + "/" + KindFirewallRule:
		return o.firewallRule(name, childName, value)
	case KindServer + "/" + KindParameter:
		return o.parameter(name, childName, value)
	case KindVNet + "/" + KindSubnet:
		return o.subnet(name, childName, value)
	case KindVNet + "/" + KindPeering:
		i, ok := o.vnets[name]
		if !ok {
			return nil
		}
		vn := &o.t.VNets[i]
		vn.Peerings = setMember(vn.Peerings, childName, value != nil)
		return nil
	case KindZone + "/" + KindLink:
		i, ok := o.zones[name]
		if !ok {
			return nil
		}
		z := &o.t.PrivateDNSZones[i]
		z.Links = setMember(z.Links, childName, value != nil)
		return nil
	}
	return fmt.Errorf("unknown kind %q", kind+"/"+child)
}

// setMember returns list with name in it or not, copying list before a change.
func setMember(list []string, name string, in bool) []string {
	i := slices.Index(list, name)
	switch {
	case in && i < 0:
		return append(slices.Clip(list), name)
	case !in && i >= 0:
		return slices.Delete(slices.Clone(list), i, i+1)
	}
	return list
}

func decodeStrict(value json.RawMessage, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(value)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}

func (o *overlay) server(name string, value json.RawMessage) error {
	i, exists := o.servers[name]
	if value == nil {
		if exists {
			o.list[i] = nil
			delete(o.servers, name)
			o.deleted = true
		}
		return nil
	}
	var s Server
	if err := decodeStrict(value, &s); err != nil {
		return err
	}
	s.Name = name
	s.FirewallRules, s.Parameters = nil, nil
	if exists {
		s.FirewallRules, s.Parameters = o.list[i].FirewallRules, o.list[i].Parameters
		o.list[i] = &s
		o.owned[i] = true
		return nil
	}
	o.servers[name] = len(o.list)
	o.owned[len(o.list)] = true
	o.list = append(o.list, &s)
	return nil
}

// own returns server i for changing: servers are shared between
// topologies (the file's, the snapshot's), so the first change copies it.
func (o *overlay) own(i int) *Server {
	if !o.owned[i] {
		cp := *o.list[i]
		o.list[i] = &cp
		o.owned[i] = true
	}
	return o.list[i]
}

func (o *overlay) firewallRule(server, rule string, value json.RawMessage) error {
	i, ok := o.servers[server]
	if !ok {
		return nil
	}
	s := o.own(i)
	var err error
	s.FirewallRules, err = setChild(s.FirewallRules, rule, value, func(r *FirewallRule) *string { return &r.Name })
	return err
}

// setChild returns list with its child called name replaced by value, added
// as value, or removed when value is nil. The list is copied before a
// change: it may be the file's.
func setChild[T any](list []T, name string, value json.RawMessage, nameOf func(*T) *string) ([]T, error) {
	j := slices.IndexFunc(list, func(c T) bool { return *nameOf(&c) == name })
	if value == nil {
		if j >= 0 {
			return slices.Delete(slices.Clone(list), j, j+1), nil
		}
		return list, nil
	}
	var c T
	if err := decodeStrict(value, &c); err != nil {
		return list, err
	}
	*nameOf(&c) = name
	list = slices.Clone(list)
	if j >= 0 {
		list[j] = c
	} else {
		list = append(list, c)
	}
	return list, nil
}

func (o *overlay) parameter(server, param string, value json.RawMessage) error {
	i, ok := o.servers[server]
	if !ok {
		return nil
	}
	s := o.own(i)
	params := maps.Clone(s.Parameters)
	if params == nil {
		params = map[string]string{}
	}
	if value == nil {
		delete(params, param)
	} else {
		var v string
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decoding: %w", err)
		}
		params[param] = v
	}
	if len(params) == 0 {
		params = nil
	}
	s.Parameters = params
	return nil
}

func (o *overlay) vnet(name string, value json.RawMessage) error {
	i, exists := o.vnets[name]
	if value == nil {
		if exists {
			o.t.VNets[i].Name = ""
			delete(o.vnets, name)
			o.deleted = true
		}
		return nil
	}
	var vn VNet
	if err := decodeStrict(value, &vn); err != nil {
		return err
	}
	vn.Name = name
	vn.Subnets, vn.Peerings = nil, nil
	if exists {
		vn.Subnets, vn.Peerings = o.t.VNets[i].Subnets, o.t.VNets[i].Peerings
		o.t.VNets[i] = vn
		return nil
	}
	o.vnets[name] = len(o.t.VNets)
	o.t.VNets = append(o.t.VNets, vn)
	return nil
}

func (o *overlay) subnet(vnet, subnet string, value json.RawMessage) error {
	i, ok := o.vnets[vnet]
	if !ok {
		return nil
	}
	vn := &o.t.VNets[i]
	var err error
	vn.Subnets, err = setChild(vn.Subnets, subnet, value, func(s *Subnet) *string { return &s.Name })
	return err
}

func (o *overlay) zone(name string, value json.RawMessage) error {
	i, exists := o.zones[name]
	if value == nil {
		if exists {
			o.t.PrivateDNSZones[i].Name = ""
			delete(o.zones, name)
			o.deleted = true
		}
		return nil
	}
	var z PrivateDNSZone
	if err := decodeStrict(value, &z); err != nil {
		return err
	}
	z.Name = name
	z.Links = nil
	if exists {
		z.Links = o.t.PrivateDNSZones[i].Links
		o.t.PrivateDNSZones[i] = z
		return nil
	}
	o.zones[name] = len(o.t.PrivateDNSZones)
	o.t.PrivateDNSZones = append(o.t.PrivateDNSZones, z)
	return nil
}

// compact removes the deleted top-level objects.
func (o *overlay) compact() {
	if !o.deleted {
		return
	}
	o.list = slices.DeleteFunc(o.list, func(s *Server) bool { return s == nil })
	o.t.VNets = slices.DeleteFunc(o.t.VNets, func(v VNet) bool { return v.Name == "" })
	o.t.PrivateDNSZones = slices.DeleteFunc(o.t.PrivateDNSZones, func(z PrivateDNSZone) bool { return z.Name == "" })
}

// Keys returns the overlay key of every object in t.
func Keys(t *Topology) map[string]bool {
	out := map[string]bool{}
	for _, s := range t.Servers.All() {
		out[ServerKey(s.Name)] = true
		for _, c := range serverChildKeys(s) {
			out[c] = true
		}
	}
	for i := range t.VNets {
		out[VNetKey(t.VNets[i].Name)] = true
		for _, c := range vnetChildKeys(&t.VNets[i]) {
			out[c] = true
		}
	}
	for i := range t.PrivateDNSZones {
		out[ZoneKey(t.PrivateDNSZones[i].Name)] = true
		for _, c := range zoneChildKeys(&t.PrivateDNSZones[i]) {
			out[c] = true
		}
	}
	return out
}

// Defines reports whether t defines the object at an overlay key: a
// deletion of one of these must be remembered, or the object would come
// back. server finds one of t's servers by name (the caller's index), so
// that a server's key costs a lookup; VNets and zones are scanned.
func Defines(t *Topology, server func(name string) *Server, key string) bool {
	k, ok := ParseKey(key)
	if !ok {
		return false
	}
	var children []string
	switch k.Kind {
	case KindServer:
		s := server(k.Name)
		if s == nil {
			return false
		}
		if k.ChildKind == "" {
			return true
		}
		children = serverChildKeys(s)
	case KindVNet:
		i := slices.IndexFunc(t.VNets, func(v VNet) bool { return v.Name == k.Name })
		if i < 0 {
			return false
		}
		if k.ChildKind == "" {
			return true
		}
		children = vnetChildKeys(&t.VNets[i])
	case KindZone:
		i := slices.IndexFunc(t.PrivateDNSZones, func(z PrivateDNSZone) bool { return CanonicalZone(z.Name) == k.Name })
		if i < 0 {
			return false
		}
		if k.ChildKind == "" {
			return true
		}
		children = zoneChildKeys(&t.PrivateDNSZones[i])
	}
	return slices.Contains(children, key)
}

// ServerChildKeys returns the keys of a server's firewall rules and
// parameters: deleting the server deletes them with it.
func ServerChildKeys(s *Server) []string { return serverChildKeys(s) }

func serverChildKeys(s *Server) []string {
	var out []string
	for _, r := range s.FirewallRules {
		out = append(out, FirewallRuleKey(s.Name, r.Name))
	}
	for _, p := range slices.Sorted(maps.Keys(s.Parameters)) {
		out = append(out, ParameterKey(s.Name, p))
	}
	return out
}

func vnetChildKeys(vn *VNet) []string {
	var out []string
	for _, sn := range vn.Subnets {
		out = append(out, SubnetKey(vn.Name, sn.Name))
	}
	for _, p := range vn.Peerings {
		out = append(out, PeeringKey(vn.Name, p))
	}
	return out
}

func zoneChildKeys(z *PrivateDNSZone) []string {
	var out []string
	for _, l := range z.Links {
		out = append(out, LinkKey(z.Name, l))
	}
	return out
}
