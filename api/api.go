// Package api is pgplane's admin API: HTTP and JSON, a bearer token, bound
// to loopback unless a token protects it. It serves the cluster's state and
// the operator's failover and failback (SPEC.md C4), and changes servers,
// firewall rules, parameters, VNets, subnets, peerings, private DNS zones and
// their links at run time, checked by the topology's rules (A1, A2) and
// replicated to every node (C5).
package api

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/internal/throttle"
	"github.com/pgplane/pgplane/topology"

	"github.com/rs/zerolog"
)

// Cluster is what the API drives: a cluster node.
type Cluster interface {
	Status() cluster.Status
	Operate(key string, value int, reason string, acceptSplitBrain bool) (cluster.Decision, error)
}

// Config configures the API server.
type Config struct {
	// Listen is the address, IP:port; default 127.0.0.1:8530.
	Listen string
	// Token is the bearer token every request must carry. Without one the
	// server refuses to listen on anything but loopback.
	Token string
	// TLS, when set, serves HTTPS: the token then never crosses the
	// network in the clear.
	TLS      *tls.Config
	Snapshot func() *topology.Snapshot
	// Cluster is nil on a node without a cluster: failover is refused.
	Cluster Cluster
	// Desired takes the changes to servers, rules, parameters, VNets and
	// zones; nil refuses them.
	Desired Desired
	// Health reports the node's state for GET /v1/health.
	Health func() HealthView
	Logger zerolog.Logger
}

// DefaultListen is the admin API's default address.
const DefaultListen = "127.0.0.1:8530"

// Server is the admin API server.
type Server struct {
	cfg     Config
	http    *http.Server
	ln      net.Listener
	guesses *throttle.Failures // wrong tokens by client address
}

// New checks the configuration and makes a server.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	ap, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen address %q: want IP:port", cfg.Listen)
	}
	if cfg.Token == "" && !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("admin: refusing to listen on %s without a token (admin_token_file); only loopback may go without", cfg.Listen)
	}
	s := &Server{cfg: cfg, guesses: throttle.New()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cluster", s.clusterShow)
	mux.HandleFunc("GET /v1/health", s.health)
	mux.HandleFunc("POST /v1/servers/{name}/failover", s.serverFailover)
	mux.HandleFunc("POST /v1/servers/{name}/failback", s.serverFailback)
	mux.HandleFunc("POST /v1/regions/{name}/failover", s.regionFailover)
	mux.HandleFunc("POST /v1/regions/{name}/failback", s.regionFailback)
	s.routeResources(mux)
	s.http = &http.Server{Handler: s.authenticate(mux), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	return s, nil
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		ln, scheme = tls.NewListener(ln, s.cfg.TLS), "https"
	}
	s.ln = ln
	go s.http.Serve(ln)
	ev := s.cfg.Logger.Info()
	if ap, _ := netip.ParseAddrPort(s.cfg.Listen); scheme == "http" && !ap.Addr().IsLoopback() {
		ev = s.cfg.Logger.Warn().Str("advice", "the token crosses the network in the clear: add admin_tls CERT_FILE KEY_FILE")
	}
	ev.Str("address", s.cfg.Listen).Str("scheme", scheme).Msg("admin API listening")
	return nil
}

// Stop closes the server.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.http.Shutdown(ctx)
}

// Error is the JSON body of every refusal.
type Error struct {
	Error string `json:"error"`
}

// authenticate checks the bearer token. Wrong tokens from one address are
// logged, and past a few in a row that address is refused with 429 for a
// while, doubling up to a few seconds: a guesser gets a handful of tries a
// minute, and other addresses are not slowed (A1).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token != "" {
			client, _, _ := net.SplitHostPort(r.RemoteAddr)
			if wait := s.guesses.Waiting(client); wait > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
				writeError(w, http.StatusTooManyRequests, "too many wrong tokens from %s; try again in %s", client, wait.Round(100*time.Millisecond))
				return
			}
			want := "Bearer " + s.cfg.Token
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
				delay, n := s.guesses.Failed(client)
				ev := s.cfg.Logger.Warn()
				if n > throttle.Free && n&(n-1) != 0 {
					ev = s.cfg.Logger.Debug() // a guesser: every power of two is enough in the log
				}
				ev.Str("client", client).Str("request", r.Method+" "+r.URL.Path).Int("failures", n).Dur("refused_for", delay).Msg("admin: wrong or missing token")
				w.Header().Set("WWW-Authenticate", `Bearer realm="pgplane"`)
				writeError(w, http.StatusUnauthorized, "a valid bearer token is required (pgplanectl --token, or PGPLANE_TOKEN)")
				return
			}
			s.guesses.Succeeded(client)
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, Error{Error: fmt.Sprintf(format, args...)})
}

// ClusterView is GET /v1/cluster: the node's view, with the active addresses.
type ClusterView struct {
	cluster.Status
	Regions []RegionView `json:"regions"`
	Servers []ServerView `json:"servers"`
}

// RegionView is a region's gateway addresses and the active one.
type RegionView struct {
	Name     string   `json:"name"`
	Gateways []string `json:"gateways"`
	Active   string   `json:"active"`
}

// ServerView is an HA server's current side.
type ServerView struct {
	Name          string `json:"name"`
	OnStandby     bool   `json:"on_standby"`
	Backend       string `json:"backend"`
	Address       string `json:"address,omitempty"`
	RecordBlocked bool   `json:"record_blocked,omitempty"`
}

func (s *Server) clusterShow(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeError(w, http.StatusServiceUnavailable, "this node is not in a cluster (no cluster_bind)")
		return
	}
	snap := s.cfg.Snapshot()
	v := ClusterView{Status: s.cfg.Cluster.Status()}
	for _, name := range sortedKeys(snap.Regions) {
		rg := snap.Regions[name]
		rv := RegionView{Name: name, Active: rg.Active.String()}
		for _, g := range rg.Gateways {
			rv.Gateways = append(rv.Gateways, g.String())
		}
		v.Regions = append(v.Regions, rv)
	}
	for _, name := range snap.ServerNames() {
		si := snap.Server(name)
		if !si.Server.HighAvailability {
			continue
		}
		sv := ServerView{Name: name, OnStandby: snap.State.FailedOver[name], Backend: si.Backend(), RecordBlocked: si.RecordBlocked}
		if si.Private {
			sv.Address = si.Address.String()
		}
		v.Servers = append(v.Servers, sv)
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) serverFailover(w http.ResponseWriter, r *http.Request) {
	s.serverMove(w, r, true)
}

func (s *Server) serverFailback(w http.ResponseWriter, r *http.Request) {
	s.serverMove(w, r, false)
}

// ServerMove is the optional body of a server failover or failback.
type ServerMove struct {
	// AcceptSplitBrain routes to a fenced backend: one that went down as
	// the primary after a failover and may have diverged (C6).
	AcceptSplitBrain bool `json:"acceptSplitBrain,omitempty"`
}

// serverMove puts an HA server on its standby (failover) or its primary
// (failback).
func (s *Server) serverMove(w http.ResponseWriter, r *http.Request, toStandby bool) {
	name := r.PathValue("name")
	var body ServerMove
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "body: %v", err)
			return
		}
	}
	si := s.cfg.Snapshot().Server(name)
	switch {
	case si == nil:
		writeError(w, http.StatusNotFound, "server %q does not exist", name)
		return
	case !si.Server.HighAvailability:
		writeError(w, http.StatusConflict, "server %q: high availability is off, there is no standby to fail over to", name)
		return
	}
	value, reason := 0, "operator failback to the primary"
	if toStandby {
		value, reason = 1, "operator failover to the standby"
	}
	if body.AcceptSplitBrain {
		reason += " (--accept-split-brain)"
	}
	s.operate(w, cluster.ServerKey(name), value, reason, body.AcceptSplitBrain)
}

// RegionMove is the body of a region failover: the address to activate;
// empty means the next one.
type RegionMove struct {
	To string `json:"to,omitempty"`
}

func (s *Server) regionFailover(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	snap := s.cfg.Snapshot()
	rg := snap.Regions[name]
	if rg == nil {
		writeError(w, http.StatusNotFound, "region %q does not exist", name)
		return
	}
	var body RegionMove
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "body: %v", err)
			return
		}
	}
	active := snap.State.ActiveGateway[name]
	value := (active + 1) % len(rg.Gateways)
	if body.To != "" {
		value = -1
		for i, g := range rg.Gateways {
			if g.String() == body.To {
				value = i
			}
		}
		if value < 0 {
			writeError(w, http.StatusBadRequest, "region %q: to: %s is not one of its gateway addresses", name, body.To)
			return
		}
	}
	s.operate(w, "region/"+name, value, fmt.Sprintf("operator failover to %s", rg.Gateways[value]), false)
}

func (s *Server) regionFailback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.cfg.Snapshot().Regions[name] == nil {
		writeError(w, http.StatusNotFound, "region %q does not exist", name)
		return
	}
	s.operate(w, "region/"+name, 0, "operator failback to the primary gateway address", false)
}

func (s *Server) operate(w http.ResponseWriter, key string, value int, reason string, acceptSplitBrain bool) {
	if s.cfg.Cluster == nil {
		writeError(w, http.StatusServiceUnavailable, "this node is not in a cluster (no cluster_bind): failover needs one")
		return
	}
	d, err := s.cfg.Cluster.Operate(key, value, reason, acceptSplitBrain)
	switch {
	case errors.Is(err, cluster.ErrTargetDown), errors.Is(err, cluster.ErrRoleRefused):
		writeError(w, http.StatusConflict, "%v", err)
	case err != nil:
		writeError(w, http.StatusBadRequest, "%v", err)
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Target is a probe target's name, as in cluster.Target.
type Target = cluster.Target

// HealthView is GET /v1/health: the node's own state, in detail. The
// status is 200 when Ready, else 503.
type HealthView struct {
	Ready    bool           `json:"ready"`
	Topology TopologyHealth `json:"topology"`
	// Gateway is nil on a node without a gateway.
	Gateway *GatewayHealth `json:"gateway,omitempty"`
	// Cluster is nil on a node without a cluster.
	Cluster *ClusterHealth `json:"cluster,omitempty"`
	State   StateHealth    `json:"state"`
}

// TopologyHealth is the desired state being served.
type TopologyHealth struct {
	File    string `json:"file"`
	Serial  uint32 `json:"serial"`
	Regions int    `json:"regions"`
	VNets   int    `json:"vnets"`
	Zones   int    `json:"private_dns_zones"`
	Servers int    `json:"servers"`
}

// GatewayHealth is the gateway's listeners.
type GatewayHealth struct {
	Configured []string `json:"configured"`
	Listening  []string `json:"listening"`
}

// ClusterHealth is the node's membership.
type ClusterHealth struct {
	Joined bool `json:"joined"`
	Alive  int  `json:"members_alive"`
	Quorum int  `json:"quorum"`
	Of     int  `json:"members"`
}

// StateHealth is the node's share of the run-time changes, committed
// through Raft (C5).
type StateHealth struct {
	Dir string `json:"dir,omitempty"`
	// Entries are the run-time changes in force.
	Entries int `json:"entries"`
	// Raft is this member's Raft state (Leader, Follower, Candidate), or
	// "none" without a state directory.
	Raft   string `json:"raft"`
	Leader string `json:"leader,omitempty"`
	Term   uint64 `json:"term,omitempty"`
	// Applied is the Raft index of the last change applied here.
	Applied uint64 `json:"applied_index"`
	// LastContact is how long ago a follower last heard from its leader.
	LastContact string `json:"last_contact,omitempty"`
	// Stopped says why Raft stopped on this node while it runs (its state
	// directory was removed): changes are refused until a restart.
	Stopped string `json:"stopped,omitempty"`
	// Conflict says why the committed changes break a rule with this
	// node's topology file, while an older state is served; empty when
	// none.
	Conflict string `json:"conflict,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Health == nil {
		writeError(w, http.StatusServiceUnavailable, "this node reports no health")
		return
	}
	h := s.cfg.Health()
	status := http.StatusOK
	if !h.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}
