package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/pgplane/pgplane/topology"
)

// Desired is the desired state the API changes: the topology file with the
// run-time changes laid over it, replicated to every node (C5).
type Desired interface {
	// Change checks a change of overlay keys (nil deletes) against every
	// rule, commits it and serves it. It returns topology.Violations when
	// a rule refuses the change, and an error with an Unavailable method
	// when it cannot be made now (503); a refused change changes nothing.
	Change(changes map[string]json.RawMessage) error
}

// isUnavailable reports an error that says the change cannot be made now
// (no majority, no state directory): one with an Unavailable method that
// returns true, answered with 503.
func isUnavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

// DesiredFunc makes a function a Desired.
type DesiredFunc func(changes map[string]json.RawMessage) error

// Change calls f.
func (f DesiredFunc) Change(changes map[string]json.RawMessage) error { return f(changes) }

// ViolationView is one broken rule in an error body.
type ViolationView struct {
	Rule    string `json:"rule"`
	Object  string `json:"object,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// ChangeError is the body of a refused change: the message, and each rule
// it breaks.
type ChangeError struct {
	Error      string          `json:"error"`
	Violations []ViolationView `json:"violations,omitempty"`
}

// conflictRules are the rules that refuse a change because of the state it
// meets rather than its own content: the API answers them with 409.
var conflictRules = map[string]bool{"T2": true, "T5": true, "T10": true, "T11": true, "Z2": true, "Z3": true, "D10": true, "lock": true, "in-use": true}

// routeResources registers the resource routes: servers, their firewall
// rules, VNets, their subnets and private DNS zones through the generic
// handlers of their kind; parameters, peerings and links, which are values
// and memberships rather than objects, through their own.
func (s *Server) routeResources(mux *http.ServeMux) {
	route(mux, s, "/v1/servers/{name}", servers)
	route(mux, s, "/v1/servers/{name}/firewall-rules/{rule}", firewallRules)
	route(mux, s, "/v1/vnets/{name}", vnets)
	route(mux, s, "/v1/vnets/{name}/subnets/{subnet}", subnets)
	route(mux, s, "/v1/private-dns-zones/{zone}", zones)
	mux.HandleFunc("GET /v1/servers/{name}/parameters", s.listParameters)
	mux.HandleFunc("GET /v1/servers/{name}/parameters/{param}", s.showParameter)
	mux.HandleFunc("PUT /v1/servers/{name}/parameters/{param}", s.putParameter)
	mux.HandleFunc("DELETE /v1/servers/{name}/parameters/{param}", s.resetParameter)
	mux.HandleFunc("PUT /v1/vnets/{name}/peerings/{other}", s.putPeering)
	mux.HandleFunc("DELETE /v1/vnets/{name}/peerings/{other}", s.deletePeering)
	mux.HandleFunc("PUT /v1/private-dns-zones/{zone}/links/{vnet}", s.putLink)
	mux.HandleFunc("DELETE /v1/private-dns-zones/{zone}/links/{vnet}", s.deleteLink)
}

// focus keeps, of the violations a rule reports from both sides of a
// conflict (Z2: a zone named after a server), those of the objects the
// change touches, so that a refusal speaks of what the caller created.
func focus(vs topology.Violations, changes map[string]json.RawMessage) topology.Violations {
	touched := map[string]bool{}
	for key := range changes {
		k, _ := topology.ParseKey(key)
		switch k.Kind {
		case topology.KindServer:
			touched[fmt.Sprintf("server %q", k.Name)] = true
		case topology.KindZone:
			touched[fmt.Sprintf("private DNS zone %q", topology.CanonicalZone(k.Name))] = true
		}
	}
	label := func(v topology.Violation) string {
		if z, ok := strings.CutPrefix(v.Object, "private DNS zone "); ok {
			if name, err := strconv.Unquote(z); err == nil {
				return fmt.Sprintf("private DNS zone %q", topology.CanonicalZone(name))
			}
		}
		return v.Object
	}
	mine := false
	for _, v := range vs {
		mine = mine || (v.Rule == "Z2" && touched[label(v)])
	}
	if !mine {
		return vs
	}
	var out topology.Violations
	for _, v := range vs {
		if v.Rule != "Z2" || touched[label(v)] {
			out = append(out, v)
		}
	}
	return out
}

// state is the desired state being served, as the handlers read it: the
// topology, and the snapshot made of it for lookups by name.
type state struct {
	*topology.Topology
	snap *topology.Snapshot
}

// topo returns the desired state being served.
func (s *Server) topo() state {
	snap := s.cfg.Snapshot()
	return state{snap.Topology, snap}
}

// commit applies a change and answers with status and the object result
// returns from the new state, or with the refusal.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, changes map[string]json.RawMessage, status int, result func(state) any) {
	if s.cfg.Desired == nil {
		writeError(w, http.StatusServiceUnavailable, "this node serves no desired state to change")
		return
	}
	err := s.cfg.Desired.Change(changes)
	var vs topology.Violations
	switch {
	case errors.As(err, &vs):
		vs = focus(vs, changes)
		s.cfg.Logger.Info().Str("client", r.RemoteAddr).Str("request", r.Method+" "+r.URL.Path).Strs("rules", vs.Rules()).Msg("admin: change refused")
		body := ChangeError{Error: vs.Error()}
		code := http.StatusBadRequest
		for _, v := range vs {
			body.Violations = append(body.Violations, ViolationView{Rule: v.Rule, Object: v.Object, Field: v.Field, Message: v.Message})
			if conflictRules[v.Rule] {
				code = http.StatusConflict
			}
		}
		writeJSON(w, code, body)
		return
	case isUnavailable(err):
		s.cfg.Logger.Warn().Str("client", r.RemoteAddr).Str("request", r.Method+" "+r.URL.Path).Err(err).Msg("admin: change refused")
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	case err != nil:
		s.cfg.Logger.Error().Err(err).Msg("admin: change failed")
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	keys := slices.Sorted(maps.Keys(changes))
	s.cfg.Logger.Info().Str("client", r.RemoteAddr).Str("request", r.Method+" "+r.URL.Path).Strs("keys", keys).Msg("admin: change applied")
	if result == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, result(s.topo()))
}

// maxBody is the largest request body the API reads.
const maxBody = 1 << 20

// decodeBody reads a JSON body strictly: an unknown field is an error that
// names it; a body over maxBody is refused with 413.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body: larger than %d bytes", maxBody)
			return false
		}
		writeError(w, http.StatusBadRequest, "request body: %v", err)
		return false
	}
	return true
}

// mustNotExist answers 409 when the client asked to create (If-None-Match: *)
// an object that exists.
func mustNotExist(w http.ResponseWriter, r *http.Request, exists bool, what string) bool {
	if exists && r.Header.Get("If-None-Match") == "*" {
		writeError(w, http.StatusConflict, "%s already exists", what)
		return false
	}
	return true
}

func created(existed bool) int {
	if existed {
		return http.StatusOK
	}
	return http.StatusCreated
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("api: encoding %T: %v", v, err)) // plain structs always encode
	}
	return b
}

// deleteWith returns the changes that delete the object at key and
// everything that belongs to it.
func deleteWith(t state, key string) map[string]json.RawMessage {
	changes := map[string]json.RawMessage{key: nil}
	for _, k := range topology.ChildKeys(t.Topology, key) {
		changes[k] = nil
	}
	return changes
}

// findServer returns the server of that name, by the snapshot's index (a
// pass over 100,000 servers cost about a millisecond per request).
func findServer(t state, name string) *topology.Server { return t.snap.FindServer(name) }

func findVNet(t state, name string) *topology.VNet {
	for i := range t.VNets {
		if t.VNets[i].Name == name {
			return &t.VNets[i]
		}
	}
	return nil
}

func findZone(t state, name string) *topology.PrivateDNSZone {
	for i := range t.PrivateDNSZones {
		if topology.CanonicalZone(t.PrivateDNSZones[i].Name) == topology.CanonicalZone(name) {
			return &t.PrivateDNSZones[i]
		}
	}
	return nil
}

// nameMatches accepts a body whose name is empty or the path's.
func nameMatches(w http.ResponseWriter, noun, name string, bodyName *string) bool {
	if *bodyName != "" && *bodyName != name {
		writeError(w, http.StatusBadRequest, "%s %q: the body names %q; leave name out or make it match the path", noun, name, *bodyName)
		return false
	}
	*bodyName = name
	return true
}

// Parameter is a server parameter with its value in force and its default.
type Parameter struct {
	Name         string `json:"name"`
	Value        string `json:"value"`
	DefaultValue string `json:"defaultValue"`
	Source       string `json:"source"` // "user-override" or "system-default"
}

// parameterDefaults are the defaults of the parameters pgplane enforces (G4).
var parameterDefaults = map[string]string{
	topology.ParamRequireSecureTransport: "on",
	topology.ParamSSLMinProtocolVersion:  topology.DefaultSSLMinProtocolVersion,
	topology.ParamSSLMaxProtocolVersion:  "",
	topology.ParamAuthRole:               "",
	topology.ParamPromote:                topology.PromoteNever,
	topology.ParamPromoteGrace:           topology.DefaultPromoteGrace.String(),
	topology.ParamPatroniPrimary:         "",
	topology.ParamPatroniStandby:         "",
}

func parameterOf(srv *topology.Server, name string) Parameter {
	p := Parameter{Name: name, DefaultValue: parameterDefaults[name], Source: "system-default"}
	p.Value = p.DefaultValue
	if v, ok := srv.Parameters[name]; ok {
		p.Value, p.Source = v, "user-override"
	}
	return p
}

func (s *Server) listParameters(w http.ResponseWriter, r *http.Request) {
	_, srv := servers.lookup(s, w, r)
	if srv == nil {
		return
	}
	var out []Parameter
	for _, name := range slices.Sorted(maps.Keys(parameterDefaults)) {
		out = append(out, parameterOf(srv, name))
	}
	writeJSON(w, http.StatusOK, out)
}

// knownParameter answers 404 for a parameter pgplane does not know.
func knownParameter(w http.ResponseWriter, name string) bool {
	if _, ok := parameterDefaults[name]; !ok {
		writeError(w, http.StatusNotFound, "%s", topology.ParameterProblem(name, ""))
		return false
	}
	return true
}

func (s *Server) showParameter(w http.ResponseWriter, r *http.Request) {
	_, srv := servers.lookup(s, w, r)
	if srv == nil || !knownParameter(w, r.PathValue("param")) {
		return
	}
	writeJSON(w, http.StatusOK, parameterOf(srv, r.PathValue("param")))
}

// ParameterValue is the body of a parameter change.
type ParameterValue struct {
	Value string `json:"value"`
}

func (s *Server) putParameter(w http.ResponseWriter, r *http.Request) {
	_, srv := servers.lookup(s, w, r)
	name := r.PathValue("param")
	if srv == nil || !knownParameter(w, name) {
		return
	}
	var body ParameterValue
	if !decodeBody(w, r, &body) {
		return
	}
	server := srv.Name
	s.commit(w, r, map[string]json.RawMessage{topology.ParameterKey(server, name): raw(body.Value)}, http.StatusOK,
		func(t state) any { return parameterOf(findServer(t, server), name) })
}

// resetParameter puts a parameter back to its default.
func (s *Server) resetParameter(w http.ResponseWriter, r *http.Request) {
	_, srv := servers.lookup(s, w, r)
	name := r.PathValue("param")
	if srv == nil || !knownParameter(w, name) {
		return
	}
	server := srv.Name
	s.commit(w, r, map[string]json.RawMessage{topology.ParameterKey(server, name): nil}, http.StatusOK,
		func(t state) any { return parameterOf(findServer(t, server), name) })
}

func (s *Server) putPeering(w http.ResponseWriter, r *http.Request) {
	_, vn := vnets.lookup(s, w, r)
	if vn == nil {
		return
	}
	other, name := r.PathValue("other"), vn.Name
	s.commit(w, r, map[string]json.RawMessage{topology.PeeringKey(name, other): topology.Present}, http.StatusOK,
		func(t state) any { return findVNet(t, name) })
}

// deletePeering removes a peering from both VNets: listed on either side, it
// connects both.
func (s *Server) deletePeering(w http.ResponseWriter, r *http.Request) {
	t, vn := vnets.lookup(s, w, r)
	if vn == nil {
		return
	}
	other := r.PathValue("other")
	changes := map[string]json.RawMessage{}
	if slices.Contains(vn.Peerings, other) {
		changes[topology.PeeringKey(vn.Name, other)] = nil
	}
	if o := findVNet(t, other); o != nil && slices.Contains(o.Peerings, vn.Name) {
		changes[topology.PeeringKey(other, vn.Name)] = nil
	}
	if len(changes) == 0 {
		writeError(w, http.StatusNotFound, "vnet %q is not peered with %q", vn.Name, other)
		return
	}
	s.commit(w, r, changes, http.StatusNoContent, nil)
}

// ZoneView is a private DNS zone with the records it holds.
type ZoneView struct {
	topology.PrivateDNSZone
	Records []RecordView `json:"records"`
}

// RecordView is one A record of a private zone.
type RecordView struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

func zoneView(t state, z *topology.PrivateDNSZone) ZoneView {
	v := ZoneView{PrivateDNSZone: *z, Records: []RecordView{}}
	for _, srv := range t.Servers.All() {
		if srv.Network != nil && srv.Addresses != nil && topology.CanonicalZone(srv.Network.PrivateDNSZone) == topology.CanonicalZone(z.Name) {
			v.Records = append(v.Records, RecordView{Name: srv.Name, Address: srv.Addresses.Primary})
		}
	}
	return v
}

func (s *Server) putLink(w http.ResponseWriter, r *http.Request) {
	_, z := zones.lookup(s, w, r)
	if z == nil {
		return
	}
	zone, vnet := z.Name, r.PathValue("vnet")
	s.commit(w, r, map[string]json.RawMessage{topology.LinkKey(zone, vnet): topology.Present}, http.StatusOK,
		func(t state) any { return zoneView(t, findZone(t, zone)) })
}

func (s *Server) deleteLink(w http.ResponseWriter, r *http.Request) {
	_, z := zones.lookup(s, w, r)
	if z == nil {
		return
	}
	vnet := r.PathValue("vnet")
	if !slices.Contains(z.Links, vnet) {
		writeError(w, http.StatusNotFound, "private DNS zone %q has no link to vnet %q", z.Name, vnet)
		return
	}
	s.commit(w, r, map[string]json.RawMessage{topology.LinkKey(z.Name, vnet): nil}, http.StatusNoContent, nil)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
