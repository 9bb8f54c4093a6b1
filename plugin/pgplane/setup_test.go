package pgplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/pgplane/pgplane/appliance"
)

// topologyFileIn writes the test topology, edited by edit unless nil, to
// t.yaml in a new directory, and returns the directory and the file.
func topologyFileIn(t *testing.T, edit func(string) string) (dir, path string) {
	t.Helper()
	data, err := os.ReadFile("testdata/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if edit != nil {
		text = edit(text)
	}
	dir = t.TempDir()
	path = filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestParseOptions(t *testing.T) {
	_, topo := topologyFileIn(t, nil)
	cases := []struct {
		input string
		err   string
	}{
		{"pgplane " + topo, ""},
		{"pgplane " + topo + " {\n ttl 30\n reload 0\n ns a.example.net b.example.net\n}", ""},
		{"pgplane", "Wrong argument count"},
		{"pgplane a b", "Wrong argument count"},
		{`pgplane ""`, "pgplane takes one argument, the topology file"},
		{"pgplane " + topo + " {\n ttl 0\n}", "ttl"},
		{"pgplane " + topo + " {\n ttl five\n}", "ttl"},
		{"pgplane " + topo + " {\n reload soon\n}", "reload"},
		{"pgplane " + topo + " {\n ns\n}", "ns: want one or more values"},
		{"pgplane " + topo + " {\n colour blue\n}", `unknown property "colour"`},
	}
	for _, tc := range cases {
		c := caddy.NewTestController("dns", tc.input)
		o, err := parse(c)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tc.input, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: want error containing %q, got %v", tc.input, tc.err, err)
		case tc.err == "" && strings.Contains(tc.input, "ttl 30"):
			if o.TTL != 30 || o.Reload != 0 || len(o.NS) != 2 || o.NS[1] != "b.example.net." {
				t.Errorf("options not applied: %+v", o)
			}
		case tc.err == "":
			if o.TTL != appliance.DefaultTTL || o.Reload != appliance.DefaultReload || len(o.NS) != 0 || o.Topology != topo {
				t.Errorf("defaults not applied: %+v", o)
			}
		}
	}
}

// SPEC: T6
func TestSetupRefusesInvalidTopology(t *testing.T) {
	_, path := topologyFileIn(t, func(s string) string { return strings.Replace(s, "127.0.1.0/28", "127.0.1.0/29", 1) })
	err := setup(caddy.NewTestController("dns", "pgplane "+path))
	if err == nil || !strings.Contains(err.Error(), "T6") {
		t.Fatalf("want the T6 violation at startup, got %v", err)
	}
}

func TestParseGatewayOptions(t *testing.T) {
	_, topo := topologyFileIn(t, nil)
	for _, tc := range []struct{ block, err string }{
		{"gateway 127.0.0.1:15432 127.0.0.2:15432\n gateway_tls dev tls\n gateway_backend_tls verify-full ca.pem\n gateway_max_connections 10\n gateway_max_connections_per_source 4\n gateway_pool_size 0\n gateway_pool_idle_timeout 30s\n gateway_relay_threads 2\n gateway_handshake_timeout 3s\n gateway_trusted_proxies 10.0.0.0/8\n node_id 5\n gateway_auth_user pgplane_auth auth.pgpass\n gateway_auth_cache 30s", ""},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth maybe", "gateway_auth maybe: want terminate or passthrough"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth_user pgplane_auth", "gateway_auth_user pgplane_auth: want ROLE PASSWORD_FILE [DATABASE]"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth_user 9lives f", "not a role name"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n cluster_monitor_user pgplane_monitor", "cluster_monitor_user pgplane_monitor: want ROLE PASSWORD_FILE [DATABASE]"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n cluster_monitor_user 9lives f", "cluster_monitor_user 9lives f: \"9lives\" is not a role name"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_auth_cache forever", "gateway_auth_cache"},
		{"gateway 127.0.0.1:15432", "gateway needs gateway_tls"},
		{"gateway localhost:5432\n gateway_tls dev tls", "want IP:port"},
		{"gateway 127.0.0.1:1\n gateway_tls a", "gateway_tls"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_backend_tls maybe", "gateway_backend_tls"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n node_id 200", "node_id"},
		{"gateway 127.0.0.1:1\n gateway_tls dev x\n gateway_trusted_proxies nope", "CIDR"},
	} {
		opts, err := parse(caddy.NewTestController("dns", "pgplane "+topo+" {\n "+tc.block+"\n}"))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.block, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: want %q, got %v", tc.block, tc.err, err)
		case tc.err == "":
			o := opts.Gateway
			if len(o.Listen) != 2 || o.DevDir != "tls" || o.BackendCA != "ca.pem" || o.MaxConnections != 10 || o.PerSource != 4 || o.PoolSize != -1 || o.PoolIdle != 30*time.Second || o.Handshake != 3*time.Second || o.NodeID != 5 || len(o.TrustedProxies) != 1 ||
				o.AuthRole != "pgplane_auth" || o.AuthFile != "auth.pgpass" || o.AuthCache != 30*time.Second {
				t.Errorf("options not applied: %+v", o)
			}
		}
	}
}

func TestParseClusterOptions(t *testing.T) {
	_, topo := topologyFileIn(t, nil)
	for _, tc := range []struct{ block, err string }{
		{"cluster_name n1\n cluster_members n1 n2 n3\n cluster_bind 127.0.0.11:7946\n cluster_join 127.0.0.12:7946\n cluster_dev\n cluster_probe_interval 200ms\n cluster_fail_after 3\n cluster_gateway_port 15432", ""},
		{"cluster_bind localhost", "cluster_bind"},
		{"cluster_probe_interval soon", "cluster_probe_interval"},
		{"cluster_dev yes", "cluster_dev yes: takes no value"},
		{"cluster_colour blue", `unknown property "cluster_colour"`},
		{"cluster_members", "cluster_members: want one or more values"},
	} {
		opts, err := parse(caddy.NewTestController("dns", "pgplane "+topo+" {\n "+tc.block+"\n}"))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.block, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: want %q, got %v", tc.block, tc.err, err)
		case tc.err == "":
			o := opts.Cluster
			if o.Name != "n1" || len(o.Members) != 3 || !o.Dev || o.Interval != 200*time.Millisecond || o.FailAfter != 3 || o.GatewayPort != 15432 {
				t.Errorf("options not applied: %+v", o)
			}
		}
	}
}
