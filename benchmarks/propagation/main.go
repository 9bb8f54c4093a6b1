// Command propagation is the change propagation benchmark: on a five-node
// loopback cluster, the time from `pgplanectl firewall-rule create`
// returning to the new rule admitting a connection through every node's
// gateway, and from `firewall-rule delete` returning to every gateway
// refusing. The baseline, run beside it, is the same change made the way an
// operator without the API would: writing the topology file on every node
// and waiting for each to reload it. It prints figures; it never fails on a
// time.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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
	ctl := flag.String("ctl", "bin/pgplanectl", "the pgplanectl binary")
	out := flag.String("out", "benchmarks/propagation/out", "directory for configuration, logs and results")
	trials := flag.Int("trials", 50, "API trials")
	fileTrials := flag.Int("file-trials", 10, "baseline trials (each waits for a file reload)")
	flag.Parse()
	if err := run(*bin, *ctl, *out, *trials, *fileTrials); err != nil {
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

// waitAll polls every gateway every 5 ms until each gives want, and returns
// the time from start to the last one.
func waitAll(gws []string, roots *x509.CertPool, want bool, start time.Time) (time.Duration, error) {
	pending := slices.Clone(gws)
	for len(pending) > 0 {
		if time.Since(start) > 30*time.Second {
			return 0, fmt.Errorf("%s never turned %v", pending[0], want)
		}
		var still []string
		for _, g := range pending {
			if got, err := admitted(g, roots); err != nil || got != want {
				still = append(still, g)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return time.Since(start), nil
}

func run(bin, ctl, out string, trials, fileTrials int) error {
	bin, _ = filepath.Abs(bin)
	ctl, _ = filepath.Abs(ctl)
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

	dnsPort, gwPort, adminPort := benchkit.FreePort("127.0.0.11"), benchkit.FreePort("127.0.0.21"), benchkit.FreePort("127.0.0.11")
	var gossip, gws []string
	for i := 1; i <= nodes; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1%d:%d", i, benchkit.FreePort(fmt.Sprintf("127.0.0.1%d", i))))
		gws = append(gws, fmt.Sprintf("127.0.0.2%d:%d", i, gwPort))
	}
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
        cluster_join %s
        cluster_dev
        admin 127.0.0.1%d:%d
        state state
    }
}
`, dnsPort, i+1, i+1, gwPort, i+1, gwPort, tlsDir, i+1, members[i], strings.Join(members, " "), gossip[i], strings.Join(gossip, " "), i+1, adminPort)), 0o644)
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
	endpoint := fmt.Sprintf("http://127.0.0.11:%d", adminPort)
	pgplanectl := func(args ...string) error {
		cmd := exec.Command(ctl, append(args, "--endpoint", endpoint)...)
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pgplanectl %s: %v\n%s", strings.Join(args, " "), err, o)
		}
		return nil
	}
	fmt.Printf("%d appliance nodes, each with a gateway; the admin API of n1; %d API trials, %d file trials\n\n", nodes, trials, fileTrials)

	var creates, deletes []time.Duration
	for i := 0; i < trials; i++ {
		name := fmt.Sprintf("t%02d", i)
		if err := pgplanectl("firewall-rule", "create", "--server", "sales-db", "--name", name, "--start-ip-address", "127.0.0.1", "--end-ip-address", "127.0.0.1"); err != nil {
			return err
		}
		d, err := waitAll(gws, roots, true, time.Now())
		if err != nil {
			return fmt.Errorf("create trial %d: %w", i+1, err)
		}
		creates = append(creates, d)
		if err := pgplanectl("firewall-rule", "delete", "--server", "sales-db", "--name", name); err != nil {
			return err
		}
		dd, err := waitAll(gws, roots, false, time.Now())
		if err != nil {
			return fmt.Errorf("delete trial %d: %w", i+1, err)
		}
		deletes = append(deletes, dd)
		fmt.Printf("API trial %2d: create admitted on all %d nodes after %s, delete refused on all after %s\n", i+1, nodes, d.Round(time.Millisecond), dd.Round(time.Millisecond))
	}

	// Baseline: the same rule through the topology file on every node.
	var files []time.Duration
	write := func(rules string) {
		for _, dir := range dirs {
			tmp := filepath.Join(dir, "topology.yaml.tmp")
			os.WriteFile(tmp, []byte(topology(pg.Addr, rules)), 0o644)
			os.Rename(tmp, filepath.Join(dir, "topology.yaml"))
		}
	}
	for i := 0; i < fileTrials; i++ {
		write(fmt.Sprintf("{name: f%02d, startIpAddress: 127.0.0.1, endIpAddress: 127.0.0.1}", i))
		d, err := waitAll(gws, roots, true, time.Now())
		if err != nil {
			return fmt.Errorf("file trial %d: %w", i+1, err)
		}
		files = append(files, d)
		write("")
		if _, err := waitAll(gws, roots, false, time.Now()); err != nil {
			return fmt.Errorf("file trial %d, removing: %w", i+1, err)
		}
		fmt.Printf("file trial %2d: admitted on all %d nodes after %s\n", i+1, nodes, d.Round(time.Millisecond))
	}

	fmt.Printf("\n%-62s %10s %10s\n", "", "median", "max")
	fmt.Printf("%-62s %10s %10s\n", "pgplanectl firewall-rule create -> admitted on every node", med(creates), slices.Max(creates).Round(time.Millisecond))
	fmt.Printf("%-62s %10s %10s\n", "pgplanectl firewall-rule delete -> refused on every node", med(deletes), slices.Max(deletes).Round(time.Millisecond))
	fmt.Printf("%-62s %10s %10s\n", "baseline: topology file written on every node (reload 1s)", med(files), slices.Max(files).Round(time.Millisecond))
	fmt.Printf("ratio API / file (medians): %.3fx\n", float64(med(creates))/float64(med(files)))
	fmt.Println("target: median < 500ms and max < 1s on every node")
	return nil
}

func med(ds []time.Duration) time.Duration { return benchkit.Median(ds).Round(100 * time.Microsecond) }
