package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/pgplane/pgplane/topology"
)

// kind is one kind of object the API serves at a path, such as a server or
// a firewall rule of a server. The handlers are the same for every kind:
// list the parent's objects, show one, put one (create or update; with
// If-None-Match: * create only), delete one. A kind says only how to find
// its objects in the topology and how a body or a deletion becomes
// run-time changes; the rules that refuse a change are topology's, for the
// file and the API alike (A2).
type kind[T any] struct {
	noun string // in messages: "server", "firewall rule"
	// name is the path value that names the object; canonical, if set,
	// is its one spelling (a zone's name: lower case, no final dot).
	name      string
	canonical func(string) string
	// find returns the object a request names, or why not (404): the
	// object, or its parent, does not exist.
	find func(t state, r *http.Request) (*T, string)
	// parent says why the request's parent does not exist, or "" (always
	// "" for a top-level kind).
	parent func(t state, r *http.Request) string
	// list returns the objects under the request's parent.
	list func(t state, r *http.Request) any
	// view is what a client is shown of an object; nil: the object itself.
	view func(t state, obj *T) any
	// nameOf points at the object's name field, which a body may leave out.
	nameOf func(*T) *string
	// describe names the object in messages, such as `server "a"`.
	describe func(r *http.Request, name string) string
	// put turns a body into the run-time changes that create or update it.
	put func(r *http.Request, name string, body T) map[string]json.RawMessage
	// remove returns the changes that delete an object with all that
	// belongs to it.
	remove func(t state, r *http.Request, obj *T) map[string]json.RawMessage
}

// route registers a kind's handlers: list on the path's parent, show, put
// and delete on the path.
func route[T any](mux *http.ServeMux, s *Server, path string, k kind[T]) {
	parent := path[:strings.LastIndexByte(path, '/')]
	mux.HandleFunc("GET "+parent, func(w http.ResponseWriter, r *http.Request) { k.serveList(s, w, r) })
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { k.serveShow(s, w, r) })
	mux.HandleFunc("PUT "+path, func(w http.ResponseWriter, r *http.Request) { k.servePut(s, w, r) })
	mux.HandleFunc("DELETE "+path, func(w http.ResponseWriter, r *http.Request) { k.serveDelete(s, w, r) })
}

func (k kind[T]) show(t state, obj *T) any {
	if k.view == nil {
		return obj
	}
	return k.view(t, obj)
}

func (k kind[T]) serveList(s *Server, w http.ResponseWriter, r *http.Request) {
	t := s.topo()
	if missing := k.parent(t, r); missing != "" {
		writeError(w, http.StatusNotFound, "%s", missing)
		return
	}
	writeJSON(w, http.StatusOK, k.list(t, r))
}

// lookup returns the object a request names in the topology served, or
// answers 404 with why it is not there.
func (k kind[T]) lookup(s *Server, w http.ResponseWriter, r *http.Request) (state, *T) {
	t := s.topo()
	obj, missing := k.find(t, r)
	if obj == nil {
		writeError(w, http.StatusNotFound, "%s", missing)
	}
	return t, obj
}

func (k kind[T]) serveShow(s *Server, w http.ResponseWriter, r *http.Request) {
	if t, obj := k.lookup(s, w, r); obj != nil {
		writeJSON(w, http.StatusOK, k.show(t, obj))
	}
}

func (k kind[T]) servePut(s *Server, w http.ResponseWriter, r *http.Request) {
	t := s.topo()
	if missing := k.parent(t, r); missing != "" {
		writeError(w, http.StatusNotFound, "%s", missing)
		return
	}
	name := r.PathValue(k.name)
	if k.canonical != nil {
		name = k.canonical(name)
	}
	var body T
	if !decodeBody(w, r, &body) {
		return
	}
	if k.canonical != nil {
		*k.nameOf(&body) = k.canonical(*k.nameOf(&body))
	}
	if !nameMatches(w, k.noun, name, k.nameOf(&body)) {
		return
	}
	existing, _ := k.find(t, r)
	if !mustNotExist(w, r, existing != nil, k.describe(r, name)) {
		return
	}
	s.commit(w, r, k.put(r, name, body), created(existing != nil), func(t state) any {
		obj, _ := k.find(t, r)
		return k.show(t, obj)
	})
}

func (k kind[T]) serveDelete(s *Server, w http.ResponseWriter, r *http.Request) {
	if t, obj := k.lookup(s, w, r); obj != nil {
		s.commit(w, r, k.remove(t, r, obj), http.StatusNoContent, nil)
	}
}

// topLevel is the parent of a top-level kind: always there.
func topLevel(state, *http.Request) string { return "" }

// The kinds.
var (
	servers = kind[topology.Server]{
		noun: "server", name: "name",
		find: func(t state, r *http.Request) (*topology.Server, string) {
			return findServer(t, r.PathValue("name")), fmt.Sprintf("server %q does not exist", r.PathValue("name"))
		},
		parent:   topLevel,
		list:     func(t state, _ *http.Request) any { return t.Servers.Slice() },
		nameOf:   func(s *topology.Server) *string { return &s.Name },
		describe: func(_ *http.Request, name string) string { return fmt.Sprintf("server %q", name) },
		// Rules and parameters in the body are created or updated with
		// the server; those it does not name are kept.
		put: func(_ *http.Request, name string, body topology.Server) map[string]json.RawMessage {
			changes := map[string]json.RawMessage{}
			for _, rule := range body.FirewallRules {
				changes[topology.FirewallRuleKey(name, rule.Name)] = raw(rule)
			}
			for p, v := range body.Parameters {
				changes[topology.ParameterKey(name, p)] = raw(v)
			}
			body.FirewallRules, body.Parameters = nil, nil
			changes[topology.ServerKey(name)] = raw(body)
			return changes
		},
		remove: func(_ state, _ *http.Request, srv *topology.Server) map[string]json.RawMessage {
			changes := map[string]json.RawMessage{topology.ServerKey(srv.Name): nil}
			for _, k := range topology.ServerChildKeys(srv) {
				changes[k] = nil
			}
			return changes
		},
	}

	firewallRules = kind[topology.FirewallRule]{
		noun: "firewall rule", name: "rule",
		find: func(t state, r *http.Request) (*topology.FirewallRule, string) {
			srv, missing := servers.find(t, r)
			if srv == nil {
				return nil, missing
			}
			return child(srv.FirewallRules, r.PathValue("rule"), func(f *topology.FirewallRule) string { return f.Name }),
				fmt.Sprintf("server %q has no firewall rule %q", srv.Name, r.PathValue("rule"))
		},
		parent: parentOf(servers),
		list: func(t state, r *http.Request) any {
			return nonNil(findServer(t, r.PathValue("name")).FirewallRules)
		},
		nameOf: func(f *topology.FirewallRule) *string { return &f.Name },
		describe: func(r *http.Request, name string) string {
			return fmt.Sprintf("firewall rule %q of server %q", name, r.PathValue("name"))
		},
		put: func(r *http.Request, name string, body topology.FirewallRule) map[string]json.RawMessage {
			return map[string]json.RawMessage{topology.FirewallRuleKey(r.PathValue("name"), name): raw(body)}
		},
		remove: func(_ state, r *http.Request, f *topology.FirewallRule) map[string]json.RawMessage {
			return map[string]json.RawMessage{topology.FirewallRuleKey(r.PathValue("name"), f.Name): nil}
		},
	}

	vnets = kind[topology.VNet]{
		noun: "vnet", name: "name",
		find: func(t state, r *http.Request) (*topology.VNet, string) {
			return findVNet(t, r.PathValue("name")), fmt.Sprintf("vnet %q does not exist", r.PathValue("name"))
		},
		parent:   topLevel,
		list:     func(t state, _ *http.Request) any { return nonNil(t.VNets) },
		nameOf:   func(v *topology.VNet) *string { return &v.Name },
		describe: func(_ *http.Request, name string) string { return fmt.Sprintf("vnet %q", name) },
		// Subnets and peerings in the body are created or updated with
		// the VNet; those it does not name are kept.
		put: func(_ *http.Request, name string, body topology.VNet) map[string]json.RawMessage {
			changes := map[string]json.RawMessage{}
			for _, sn := range body.Subnets {
				changes[topology.SubnetKey(name, sn.Name)] = raw(sn)
			}
			for _, p := range body.Peerings {
				changes[topology.PeeringKey(name, p)] = topology.Present
			}
			body.Subnets, body.Peerings = nil, nil
			changes[topology.VNetKey(name)] = raw(body)
			return changes
		},
		// Peerings listed on other VNets and zone links to it go with it.
		remove: func(t state, _ *http.Request, vn *topology.VNet) map[string]json.RawMessage {
			changes := deleteWith(t, topology.VNetKey(vn.Name))
			for _, other := range t.VNets {
				if slices.Contains(other.Peerings, vn.Name) {
					changes[topology.PeeringKey(other.Name, vn.Name)] = nil
				}
			}
			for _, z := range t.PrivateDNSZones {
				if slices.Contains(z.Links, vn.Name) {
					changes[topology.LinkKey(z.Name, vn.Name)] = nil
				}
			}
			return changes
		},
	}

	subnets = kind[topology.Subnet]{
		noun: "subnet", name: "subnet",
		find: func(t state, r *http.Request) (*topology.Subnet, string) {
			vn, missing := vnets.find(t, r)
			if vn == nil {
				return nil, missing
			}
			return child(vn.Subnets, r.PathValue("subnet"), func(s *topology.Subnet) string { return s.Name }),
				fmt.Sprintf("vnet %q has no subnet %q", vn.Name, r.PathValue("subnet"))
		},
		parent: parentOf(vnets),
		list: func(t state, r *http.Request) any {
			return nonNil(findVNet(t, r.PathValue("name")).Subnets)
		},
		nameOf: func(s *topology.Subnet) *string { return &s.Name },
		describe: func(r *http.Request, name string) string {
			return fmt.Sprintf("subnet %q in vnet %q", name, r.PathValue("name"))
		},
		put: func(r *http.Request, name string, body topology.Subnet) map[string]json.RawMessage {
			return map[string]json.RawMessage{topology.SubnetKey(r.PathValue("name"), name): raw(body)}
		},
		remove: func(_ state, r *http.Request, sn *topology.Subnet) map[string]json.RawMessage {
			return map[string]json.RawMessage{topology.SubnetKey(r.PathValue("name"), sn.Name): nil}
		},
	}

	zones = kind[topology.PrivateDNSZone]{
		noun: "private DNS zone", name: "zone", canonical: topology.CanonicalZone,
		find: func(t state, r *http.Request) (*topology.PrivateDNSZone, string) {
			return findZone(t, r.PathValue("zone")), fmt.Sprintf("private DNS zone %q does not exist", r.PathValue("zone"))
		},
		parent: topLevel,
		list: func(t state, _ *http.Request) any {
			out := []ZoneView{}
			for i := range t.PrivateDNSZones {
				out = append(out, zoneView(t, &t.PrivateDNSZones[i]))
			}
			return out
		},
		view:     func(t state, z *topology.PrivateDNSZone) any { return zoneView(t, z) },
		nameOf:   func(z *topology.PrivateDNSZone) *string { return &z.Name },
		describe: func(_ *http.Request, name string) string { return fmt.Sprintf("private DNS zone %q", name) },
		// Links in the body are created with the zone; those it does not
		// name are kept.
		put: func(_ *http.Request, name string, body topology.PrivateDNSZone) map[string]json.RawMessage {
			changes := map[string]json.RawMessage{}
			for _, l := range body.Links {
				changes[topology.LinkKey(name, l)] = topology.Present
			}
			body.Links = nil
			changes[topology.ZoneKey(name)] = raw(body)
			return changes
		},
		remove: func(t state, _ *http.Request, z *topology.PrivateDNSZone) map[string]json.RawMessage {
			return deleteWith(t, topology.ZoneKey(z.Name))
		},
	}
)

// child returns the element of list with the given name, or nil.
func child[T any](list []T, name string, nameOf func(*T) string) *T {
	for i := range list {
		if nameOf(&list[i]) == name {
			return &list[i]
		}
	}
	return nil
}

// parentOf is a child kind's parent check: the parent kind's lookup.
func parentOf[T any](parent kind[T]) func(state, *http.Request) string {
	return func(t state, r *http.Request) string {
		if obj, missing := parent.find(t, r); obj == nil {
			return missing
		}
		return ""
	}
}
