package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgplane/pgplane/api"
)

// common are the flags every API command takes.
type common struct {
	endpoint string
	token    string
	output   string
	query    string
	cacert   string
}

func (c *common) register(fs *flag.FlagSet) {
	endpoint := os.Getenv("PGPLANE_ENDPOINT")
	if endpoint == "" {
		endpoint = "http://" + api.DefaultListen
	}
	fs.StringVar(&c.endpoint, "endpoint", endpoint, "admin API address (or PGPLANE_ENDPOINT)")
	fs.StringVar(&c.token, "token", os.Getenv("PGPLANE_TOKEN"), "bearer token (or PGPLANE_TOKEN)")
	fs.StringVar(&c.output, "output", "table", "table, json, yaml, tsv or none")
	fs.StringVar(&c.query, "query", "", "JMESPath `expression` over the JSON answer, as az's --query")
	fs.StringVar(&c.cacert, "cacert", os.Getenv("PGPLANE_CACERT"), "CA certificate of an https endpoint (or PGPLANE_CACERT)")
}

// call sends a request and decodes the JSON answer into out. An API error
// is returned with its message.
func (c *common) call(method, path string, body any, out any) error {
	return c.callWith(method, path, body, nil, out)
}

// callWith is call with extra request headers.
func (c *common) callWith(method, path string, body any, header map[string]string, out any) error {
	status, b, err := c.send(method, path, body, header)
	if err != nil {
		return err
	}
	if status >= 300 {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, status)
		}
		return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(b)))
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = bytes.TrimSpace(b)
		return nil
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// send sends a request and returns the answer's status and body.
func (c *common) send(method, path string, body any, header map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(c.endpoint, "/")+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if c.cacert != "" {
		pem, err := os.ReadFile(c.cacert)
		if err != nil {
			return 0, nil, fmt.Errorf("--cacert: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return 0, nil, fmt.Errorf("--cacert %s: no PEM certificate in it", c.cacert)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the admin API at %s: %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// health prints the node's own state; the exit code is 0 when it is ready.
func health(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", "this node's own state: topology, gateway, cluster, run-time changes", stderr)
	var c common
	c.register(fs)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	status, b, err := c.send(http.MethodGet, "/v1/health", nil, nil)
	var h api.HealthView
	if err == nil && status != http.StatusOK && status != http.StatusServiceUnavailable {
		err = fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(b)))
	}
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		fmt.Fprintln(stderr, "pgplanectl health:", err)
		return 1
	}
	if err := c.checkOutput(); err != nil {
		fmt.Fprintln(stderr, "pgplanectl health:", err)
		return 2
	}
	if c.output != "table" || c.query != "" {
		if err := c.render(stdout, b, nil); err != nil {
			fmt.Fprintln(stderr, "pgplanectl health:", err)
			return 1
		}
	} else {
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "ready\t%s\n", map[bool]string{true: "yes", false: "NO"}[h.Ready])
		t := h.Topology
		fmt.Fprintf(w, "topology\t%s, serial %d: %d regions, %d vnets, %d private DNS zones, %d servers\n", t.File, t.Serial, t.Regions, t.VNets, t.Zones, t.Servers)
		if g := h.Gateway; g != nil {
			fmt.Fprintf(w, "gateway\tlistening on %s (configured: %s)\n", orDash(strings.Join(g.Listening, " ")), strings.Join(g.Configured, " "))
		}
		if cl := h.Cluster; cl != nil {
			fmt.Fprintf(w, "cluster\t%s, %d of %d members alive, a flip needs %d\n", map[bool]string{true: "joined", false: "NOT JOINED"}[cl.Joined], cl.Alive, cl.Of, cl.Quorum)
		}
		fmt.Fprintf(w, "state\t%s: %d run-time changes, %s\n", orDash(h.State.Dir), h.State.Entries, raftLine(h.State))
		if h.State.Conflict != "" {
			fmt.Fprintf(w, "CONFLICT\tthe committed changes break a rule with this node's topology file; an older state is served:\n%s\n", h.State.Conflict)
		}
		w.Flush()
	}
	if !h.Ready {
		return 1
	}
	return 0
}

// raftLine says where a node stands in the Raft cluster of run-time changes.
func raftLine(st api.StateHealth) string {
	switch {
	case st.Raft == "" || st.Raft == "none":
		return "changes refused (no state directory)"
	case st.Stopped != "":
		return "CHANGES REFUSED: " + st.Stopped
	case st.Raft == "Leader":
		return fmt.Sprintf("Raft leader, term %d, applied index %d", st.Term, st.Applied)
	case st.Leader == "":
		return fmt.Sprintf("Raft %s, NO LEADER (term %d, applied index %d)", strings.ToLower(st.Raft), st.Term, st.Applied)
	}
	line := fmt.Sprintf("Raft %s of %s, term %d, applied index %d", strings.ToLower(st.Raft), st.Leader, st.Term, st.Applied)
	if st.LastContact != "" {
		line += ", leader heard " + st.LastContact + " ago"
	}
	return line
}

// clusterShow prints the cluster as one node sees it.
func clusterShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster show", "members, backends' roles, votes, active addresses, failovers and alarms", stderr)
	var c common
	c.register(fs)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	var v api.ClusterView
	if err := c.call("GET", "/v1/cluster", nil, &v); err != nil {
		fmt.Fprintln(stderr, "pgplanectl cluster show:", err)
		return 1
	}
	if err := c.checkOutput(); err != nil {
		fmt.Fprintln(stderr, "pgplanectl cluster show:", err)
		return 2
	}
	if c.output != "table" || c.query != "" {
		b, _ := json.Marshal(v)
		if err := c.render(stdout, b, nil); err != nil {
			fmt.Fprintln(stderr, "pgplanectl cluster show:", err)
			return 1
		}
		return 0
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Node %s; a flip needs %d of %d members\n\n", v.Node, v.Quorum, len(v.Members))
	for _, a := range v.Alarms {
		fmt.Fprintf(w, "ALARM: %s\n", a.Message)
	}
	if len(v.Alarms) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "MEMBER\tGOSSIP\tVOTES")
	for _, m := range v.Members {
		fmt.Fprintf(w, "%s\t%s\t%s\n", m.Name, m.Gossip, map[bool]string{true: "fresh", false: "stale"}[m.VotesFresh])
	}
	fmt.Fprintln(w, "\nREGION\tACTIVE\tGATEWAYS")
	for _, r := range v.Regions {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.Active, strings.Join(r.Gateways, ", "))
	}
	if len(v.Servers) > 0 {
		fmt.Fprintln(w, "\nHA SERVER\tSIDE\tBACKEND\tADDRESS")
		for _, s := range v.Servers {
			side := "primary"
			if s.OnStandby {
				side = "standby"
			}
			if s.RecordBlocked {
				side += " (record blocked by ReadOnly lock)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, side, s.Backend, s.Address)
		}
	}
	if len(v.Roles) > 0 {
		fmt.Fprintln(w, "\nBACKEND\tROLE AS EACH MEMBER SEES IT")
		for _, t := range slices.Sorted(maps.Keys(v.Roles)) {
			var seen []string
			for _, m := range slices.Sorted(maps.Keys(v.Roles[t])) {
				seen = append(seen, m+" "+string(v.Roles[t][m]))
			}
			fmt.Fprintf(w, "%s\t%s\n", t, strings.Join(seen, ", "))
		}
	}
	if len(v.Down) > 0 {
		fmt.Fprintln(w, "\nSEEN DOWN\tBY")
		var targets []string
		for t := range v.Down {
			targets = append(targets, string(t))
		}
		sort.Strings(targets)
		for _, t := range targets {
			fmt.Fprintf(w, "%s\t%s\n", t, strings.Join(v.Down[api.Target(t)], ", "))
		}
	}
	if len(v.Decisions) > 0 {
		fmt.Fprintln(w, "\nDECISION\tVALUE\tBY\tREASON")
		for _, d := range v.Decisions {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", d.Key, d.Value, d.Version.Node, d.Reason)
		}
	}
	w.Flush()
	return 0
}
