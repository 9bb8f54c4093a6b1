// Command propagation is the change propagation benchmark: on a five-node
// loopback cluster whose run-time changes are committed through Raft, the
// latency of a firewall-rule write through the admin API until it is
// acknowledged, and the time from that acknowledgement until the rule is
// enforced by each node's gateway (a new rule admitting, a deleted one
// refusing), with the write sent to the leader's API (leader local) and to a
// follower's (leader remote, forwarded). The baseline, run beside it, is
// the same change made the way an operator without the API would: writing
// the topology file on every node and waiting for each to reload it. It
// prints figures; it never fails on a time.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/internal/benchkit"
	"github.com/pgplane/pgplane/internal/pgtest"
	"github.com/pgplane/pgplane/pgwire"
)

func main() {
	bin := flag.String("bin", "bin/pgplane", "the appliance binary")
	out := flag.String("out", "benchmarks/propagation/out", "directory for configuration, logs and results")
	trials := flag.Int("trials", 50, "API trials of each kind (leader local, leader remote)")
	fileTrials := flag.Int("file-trials", 10, "baseline trials (each waits for a file reload)")
	flag.Parse()
	if err := run(*bin, *out, *trials, *fileTrials); err != nil {
		fmt.Fprintln(os.Stderr, "bench-propagation:", err)
		os.Exit(1)
	}
}

const nodes = 5

// topology: one region per node, so every node's gateway holds an address;
// sales-db is public and starts with no rule but the FILE_RULES placeholder.
func topology(backend, fileRules string) string {
	var b strings.Builder
	b.WriteString("regions:\n")
	for i := 1; i <= nodes; i++ {
		fmt.Fprintf(&b, "  - {name: r%d, gateways: [127.0.0.2%d, 127.0.0.3%d]}\n", i, i, i)
	}
	fmt.Fprintf(&b, "servers:\n  - name: sales-db\n    region: r1\n    access: public\n    backends: {primary: %q}\n", backend)
	if fileRules != "" {
		fmt.Fprintf(&b, "    firewallRules: [%s]\n", fileRules)
	}
	return b.String()
}

// admitted connects through a gateway as a client would and reports
// whether the firewall let it through: the backend's authentication request
// arrives, or the gateway's refusal.
func admitted(addr string, roots *x509.CertPool) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(pgwire.SSLRequest()); err != nil {
		return false, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		return false, fmt.Errorf("SSLRequest answered %q: %v", b[0], err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "sales-db.postgres.database.azure.com", RootCAs: roots})
	body := []byte{0, 3, 0, 0}
	for _, kv := range []string{"user", "app", "database", "appdb"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	if _, err := tc.Write(append(msg, body...)); err != nil {
		return false, err
	}
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return false, err
	}
	switch b[0] {
	case 'R':
		return true, nil
	case 'E':
		return false, nil
	}
	return false, fmt.Errorf("unexpected message %q", b[0])
}

// waitAll polls every gateway until each gives want, and returns the time
// from start to the last one.
func waitAll(gws []string, roots *x509.CertPool, want bool, start time.Time) (time.Duration, error) {
	each, err := waitEach(gws, roots, want, start)
	if err != nil {
		return 0, err
	}
	return slices.Max(each), nil
}

// waitEach polls every gateway, each from its own goroutine, every
// millisecond until it gives want, and returns the time from start to each
// one's first answer that did.
func waitEach(gws []string, roots *x509.CertPool, want bool, start time.Time) ([]time.Duration, error) {
	each := make([]time.Duration, len(gws))
	errs := make(chan error, len(gws))
	for i, g := range gws {
		go func() {
			for {
				if got, err := admitted(g, roots); err == nil && got == want {
					each[i] = time.Since(start)
					errs <- nil
					return
				}
				if time.Since(start) > 30*time.Second {
					errs <- fmt.Errorf("%s never turned %v", g, want)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	var first error
	for range gws {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return each, first
}

func run(bin, out string, trials, fileTrials int) error {
	bin, _ = filepath.Abs(bin)
	out, _ = filepath.Abs(out)
	os.RemoveAll(out)
	os.MkdirAll(out, 0o755)
	tlsDir := filepath.Join(out, "tls")
	if _, _, err := gateway.DevCertificates(tlsDir, []string{"*.postgres.database.azure.com"}); err != nil {
		return err
	}
	caPEM, _ := os.ReadFile(filepath.Join(tlsDir, gateway.DevCAFile))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pg, err := pgtest.Start("", pgtest.Options{OwnCertificate: true})
	if err != nil {
		return err
	}
	defer func() { pg.Stop(); os.RemoveAll(pg.Dir) }()

	dnsPort, gwPort := benchkit.FreePort("127.0.0.11"), benchkit.FreePort("127.0.0.21")
	adminPort := benchkit.FreePortExcept("127.0.0.11", dnsPort)
	var ips, gws []string
	for i := 1; i <= nodes; i++ {
		ips = append(ips, fmt.Sprintf("127.0.0.1%d", i))
		gws = append(gws, fmt.Sprintf("127.0.0.2%d:%d", i, gwPort))
	}
	gossip, raft := benchkit.ClusterPorts(ips, dnsPort, adminPort)
	members := make([]string, nodes)
	for i := range members {
		members[i] = fmt.Sprintf("n%d", i+1)
	}
	var dirs []string // each node's directory, where its topology file is
	for i := 0; i < nodes; i++ {
		dir := filepath.Join(out, members[i])
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(topology(pg.Addr, "")), 0o644)
		os.WriteFile(filepath.Join(dir, "Corefile"), []byte(fmt.Sprintf(`.:%d {
    bind 127.0.0.1%d
    pgplane topology.yaml {
        reload 1s
        gateway 127.0.0.2%d:%d 127.0.0.3%d:%d
        gateway_tls dev %s
        gateway_auth_user pgplane_auth auth.pgpass
        node_id %d
        cluster_name %s
        cluster_members %s
        cluster_bind %s
        cluster_raft %s
        cluster_join %s
        cluster_dev
        admin 127.0.0.1%d:%d
        state state
    }
}
`, dnsPort, i+1, i+1, gwPort, i+1, gwPort, tlsDir, i+1, members[i], strings.Join(members, " "), gossip[i], raft[i], strings.Join(gossip, " "), i+1, adminPort)), 0o644)
		a, err := benchkit.StartAppliance(bin, dir, "")
		if err != nil {
			return err
		}
		defer a.Stop()
		dirs = append(dirs, dir)
	}
	if _, err := waitAll(gws, roots, false, time.Now()); err != nil {
		return fmt.Errorf("the gateways did not come up refusing: %w", err)
	}
	time.Sleep(2 * time.Second) // let gossip settle
	endpoints := make([]string, nodes)
	for i := range endpoints {
		endpoints[i] = fmt.Sprintf("http://127.0.0.1%d:%d", i+1, adminPort)
	}
	lead, err := benchkit.RaftLeader(endpoints[0], 20*time.Second)
	if err != nil {
		return err
	}
	lead-- // an index
	remote := (lead + 1) % nodes
	fmt.Printf("%d appliance nodes, each with a gateway; Raft leader n%d; %d API trials with the leader local (writes to n%d's API) and %d with it remote (writes to n%d's), %d file trials\n\n",
		nodes, lead+1, trials, lead+1, trials, remote+1, fileTrials)

	type series struct {
		name     string
		endpoint string
		// acked: write latency until the 201/204; enforced: from the
		// acknowledgement to enforcement, one figure per node and trial.
		acked, enforced []time.Duration
		// perNode are each node's medians, for the worst node.
		perNode [nodes][]time.Duration
	}
	runs := []*series{
		{name: "create, leader local", endpoint: endpoints[lead]}, {name: "delete, leader local", endpoint: endpoints[lead]},
		{name: "create, leader remote", endpoint: endpoints[remote]}, {name: "delete, leader remote", endpoint: endpoints[remote]},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	write := func(method, endpoint, name string) (time.Time, time.Duration, error) {
		body := `{"startIpAddress": "127.0.0.1", "endIpAddress": "127.0.0.1"}`
		if method == "DELETE" {
			body = ""
		}
		req, _ := http.NewRequest(method, endpoint+"/v1/servers/sales-db/firewall-rules/"+name, strings.NewReader(body))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return time.Time{}, 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		acked := time.Now()
		if resp.StatusCode >= 300 {
			return time.Time{}, 0, fmt.Errorf("%s %s: %s", method, name, resp.Status)
		}
		return acked, acked.Sub(start), nil
	}
	record := func(s *series, ack time.Duration, each []time.Duration) {
		s.acked = append(s.acked, ack)
		s.enforced = append(s.enforced, each...)
		for n, d := range each {
			s.perNode[n] = append(s.perNode[n], d)
		}
	}
	// A warm-up trial, not recorded: each gateway's first admitted probe
	// opens its first backend connection.
	if _, _, err := write("PUT", endpoints[lead], "warm-up"); err != nil {
		return err
	}
	if _, err := waitEach(gws, roots, true, time.Now()); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, _, err := write("DELETE", endpoints[lead], "warm-up"); err != nil {
		return err
	}
	if _, err := waitEach(gws, roots, false, time.Now()); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for i := 0; i < 2*trials; i++ {
		pair := runs[0:2]
		if i%2 == 1 {
			pair = runs[2:4]
		}
		name := fmt.Sprintf("t%03d", i)
		at, ack, err := write("PUT", pair[0].endpoint, name)
		if err != nil {
			return err
		}
		each, err := waitEach(gws, roots, true, at)
		if err != nil {
			return fmt.Errorf("create trial %d: %w", i+1, err)
		}
		record(pair[0], ack, each)
		dat, dack, err := write("DELETE", pair[1].endpoint, name)
		if err != nil {
			return err
		}
		deach, err := waitEach(gws, roots, false, dat)
		if err != nil {
			return fmt.Errorf("delete trial %d: %w", i+1, err)
		}
		record(pair[1], dack, deach)
		fmt.Printf("API trial %3d (%s): create acked in %s, enforced on all %d nodes %s later; delete acked in %s, enforced on all %s later\n",
			i+1, strings.TrimPrefix(pair[0].name, "create, "), ack.Round(100*time.Microsecond), nodes, slices.Max(each).Round(100*time.Microsecond),
			dack.Round(100*time.Microsecond), slices.Max(deach).Round(100*time.Microsecond))
	}

	// Baseline: the same rule through the topology file on every node.
	var files []time.Duration
	writeFiles := func(rules string) {
		for _, dir := range dirs {
			tmp := filepath.Join(dir, "topology.yaml.tmp")
			os.WriteFile(tmp, []byte(topology(pg.Addr, rules)), 0o644)
			os.Rename(tmp, filepath.Join(dir, "topology.yaml"))
		}
	}
	for i := 0; i < fileTrials; i++ {
		writeFiles(fmt.Sprintf("{name: f%02d, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}", i))
		d, err := waitAll(gws, roots, true, time.Now())
		if err != nil {
			return fmt.Errorf("file trial %d: %w", i+1, err)
		}
		files = append(files, d)
		writeFiles("")
		if _, err := waitAll(gws, roots, false, time.Now()); err != nil {
			return fmt.Errorf("file trial %d, removing: %w", i+1, err)
		}
		fmt.Printf("file trial %2d: admitted on all %d nodes after %s\n", i+1, nodes, d.Round(time.Millisecond))
	}

	fmt.Printf("\n%-24s %22s %34s %16s\n", "", "write acked (med/max)", "acked -> enforced, all nodes (med/max)", "worst node (med)")
	var allEnforced []time.Duration
	for _, r := range runs {
		worst := time.Duration(0)
		for n := range r.perNode {
			worst = max(worst, benchkit.Median(r.perNode[n]))
		}
		allEnforced = append(allEnforced, r.enforced...)
		fmt.Printf("%-24s %10s / %-10s %16s / %-16s %16s\n", r.name, med(r.acked), slices.Max(r.acked).Round(100*time.Microsecond),
			med(r.enforced), slices.Max(r.enforced).Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
	}
	fmt.Printf("%-24s %10s / %-10s\n", "baseline: topology file", med(files), slices.Max(files).Round(time.Millisecond))
	fmt.Printf("(the baseline is written on every node at once and counted to the last node's reload, reload 1s)\n")
	fmt.Printf("ratio acked -> enforced / file (medians): %.3fx\n", float64(benchkit.Median(allEnforced))/float64(benchkit.Median(files)))
	fmt.Println("target: acked -> enforced median <= 50ms and max <= 200ms on every node")
	return nil
}

func med(ds []time.Duration) time.Duration { return benchkit.Median(ds).Round(100 * time.Microsecond) }
