package appliance

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The rules that tie properties together are the node's and pgplanectl's
// alike, and each names the property it is about.
//
// SPEC: A1 C1
func TestValidateNamesTheProperty(t *testing.T) {
	for _, tc := range []struct {
		props    [][]string
		property string
		want     string
	}{
		{[][]string{{"gateway", "127.0.0.1:5432"}}, "gateway", "gateway needs gateway_tls"},
		{[][]string{{"gateway", "127.0.0.1:5432"}, {"gateway_tls", "dev", "tls"}}, "gateway", "needs gateway_auth_user"},
		{[][]string{{"cluster_bind", "127.0.0.1:7946"}}, "cluster_bind", "needs cluster_name and cluster_members"},
		{[][]string{{"cluster_bind", "127.0.0.1:7946"}, {"cluster_name", "n4"}, {"cluster_members", "n1", "n2"}}, "cluster_name", `cluster_name "n4" must be one of cluster_members [n1 n2]`},
		{[][]string{{"cluster_bind", "127.0.0.1:7946"}, {"cluster_name", "n1"}, {"cluster_members", "n1", "n2"}}, "cluster_bind", "gossip needs an encryption key"},
		{[][]string{{"admin", "10.0.0.1:8530"}}, "admin", "needs admin_token_file"},
		{[][]string{{"admin", "127.0.0.1:8530"}, {"cluster_bind", "127.0.0.1:7946"}, {"cluster_name", "n1"}, {"cluster_members", "n1"}, {"cluster_dev"}}, "", ""},
	} {
		o := NewOptions("t.yaml", "")
		for _, p := range tc.props {
			if err := o.Set(p[0], p[1:]); err != nil {
				t.Fatal(err)
			}
		}
		err := o.Validate()
		var p Problem
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.props, err)
		case tc.want == "":
		case !errors.As(err, &p) || p.Property != tc.property || !strings.Contains(err.Error(), tc.want):
			t.Errorf("%v: want %q about %s, got %v", tc.props, tc.want, tc.property, err)
		}
	}
}

// A property with a bad value is refused with the property, the value and
// what it wants, and leaves the options as they were.
func TestSetRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		prop []string
		want string
	}{
		{[]string{"ttl", "0"}, "ttl 0: want whole seconds from 1 to 86400"},
		{[]string{"reload", "-1s"}, "reload -1s: want a duration such as 2s, or 0 to disable"},
		{[]string{"ns", "a.example", "a..b"}, `ns a.example a..b: "a..b" is not a domain name`},
		{[]string{"gateway", "localhost:5432"}, `gateway localhost:5432: "localhost:5432": want IP:port`},
		{[]string{"gateway_pool_size", "-1"}, "gateway_pool_size -1: want a number of connections per server, 0 for no pooling"},
		{[]string{"gateway_relay_threads", "-2"}, "gateway_relay_threads -2: want a number of threads from 1 to 256, 0 to copy with goroutines"},
		{[]string{"cluster_gateway_port", "70000"}, "cluster_gateway_port 70000: want a port from 1 to 65535"},
		{[]string{"state_tombstone_ttl", "1s"}, "state_tombstone_ttl 1s: want a duration of at least 1m"},
		{[]string{"admin_tls", "cert.pem"}, "admin_tls cert.pem: want CERT_FILE KEY_FILE"},
		{[]string{"colour", "blue"}, `unknown property "colour"`},
	} {
		o := NewOptions("t.yaml", "")
		before := o.TTL
		err := o.Set(tc.prop[0], tc.prop[1:])
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want %q, got %v", tc.prop, tc.want, err)
		}
		if o.TTL != before || len(o.NS) != 0 || len(o.Gateway.Listen) != 0 {
			t.Errorf("%v: a refused value must change nothing: %+v", tc.prop, o)
		}
	}
}

// A refused value leaves the one set before it.
func TestRefusedValueKeepsTheOneBefore(t *testing.T) {
	o := NewOptions("t.yaml", "")
	for _, p := range [][]string{{"reload", "5s"}, {"cluster_bind", "127.0.0.1:7946"}, {"reload", "soon"}, {"cluster_bind", "localhost"}} {
		o.Set(p[0], p[1:])
	}
	if o.Reload != 5*time.Second || o.Cluster.Bind != "127.0.0.1:7946" {
		t.Fatalf("refused values replaced good ones: reload %s, cluster_bind %q", o.Reload, o.Cluster.Bind)
	}
}
