package appliance

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgplane/pgplane/cluster"
	"github.com/pgplane/pgplane/gateway"
)

// The files the options name are read here, by a starting node and by
// `pgplanectl validate --corefile` (Check) alike.

// Path returns a path of the options, relative ones taken from Base.
func (o *Options) Path(path string) string {
	if filepath.IsAbs(path) || o.Base == "" {
		return path
	}
	return filepath.Join(o.Base, path)
}

// Problem is what is wrong with one property's file.
type Problem struct {
	Property string
	Err      error
}

// Error is the problem's message.
func (p Problem) Error() string { return p.Err.Error() }

// Check reads every file the options name, as a starting node would, without
// starting anything or writing a file: certificates and keys, password
// files, the gossip key and the admin token. The topology file is loaded
// apart (topology.Load), with its own positions.
func (o *Options) Check() []Problem {
	var problems []Problem
	add := func(property string, err error) {
		if err != nil {
			problems = append(problems, Problem{property, err})
		}
	}
	if o.Gateway.CertFile != "" {
		_, err := o.gatewayCertificate()
		add("gateway_tls", err)
	}
	_, err := o.backendRoots()
	add("gateway_backend_tls", err)
	if o.Gateway.AuthFile != "" {
		_, err := o.passfile("gateway_auth_user", o.Gateway.AuthFile)
		add("gateway_auth_user", err)
	}
	if o.Cluster.MonitorFile != "" {
		_, err := o.passfile("cluster_monitor_user", o.Cluster.MonitorFile)
		add("cluster_monitor_user", err)
	}
	_, err = o.gossipKey()
	add("cluster_key_file", err)
	_, err = o.adminToken()
	add("admin_token_file", err)
	_, err = o.adminTLS()
	add("admin_tls", err)
	return problems
}

// gatewayCertificate loads gateway_tls CERT_FILE KEY_FILE.
func (o *Options) gatewayCertificate() (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(o.Path(o.Gateway.CertFile), o.Path(o.Gateway.KeyFile))
	if err != nil {
		return cert, fmt.Errorf("gateway_tls: %w", err)
	}
	return cert, nil
}

// backendRoots are the CA certificates of gateway_backend_tls verify-full,
// or nil.
func (o *Options) backendRoots() (*x509.CertPool, error) {
	if o.Gateway.BackendCA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(o.Path(o.Gateway.BackendCA))
	if err != nil {
		return nil, fmt.Errorf("gateway_backend_tls: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("gateway_backend_tls: no certificate in %s", o.Gateway.BackendCA)
	}
	return roots, nil
}

// passfile returns the path of a role's password file, which must exist.
func (o *Options) passfile(directive, path string) (string, error) {
	path = o.Path(path)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s: the password file: %w", directive, err)
	}
	return path, nil
}

// monitor is the monitoring role of cluster_monitor_user, or else of
// gateway_auth_user; nil when neither is set.
func (o *Options) monitor() (*cluster.Monitor, error) {
	c, g := o.Cluster, o.Gateway
	m := &cluster.Monitor{User: c.MonitorRole, Passfile: c.MonitorFile, Database: c.MonitorDB}
	directive := "cluster_monitor_user"
	if m.User == "" {
		m.User, m.Passfile, m.Database, directive = g.AuthRole, g.AuthFile, g.AuthDB, "gateway_auth_user"
	}
	if m.User == "" {
		return nil, nil
	}
	if m.Database == "" {
		m.Database = gateway.DefaultAuthDatabase
	}
	var err error
	if m.Passfile, err = o.passfile(directive, m.Passfile); err != nil {
		return nil, err
	}
	roots, err := o.backendRoots()
	if err != nil {
		return nil, err
	}
	m.TLS = func(host string) *tls.Config { return gateway.BackendTLSConfig(g.BackendTLS, roots, host) }
	return m, nil
}

// gossipKey reads cluster_key_file; nil without one.
func (o *Options) gossipKey() ([]byte, error) {
	if o.Cluster.KeyFile == "" {
		return nil, nil
	}
	text, err := os.ReadFile(o.Path(o.Cluster.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("cluster_key_file: %w", err)
	}
	key, err := cluster.DecodeKey(text)
	if err != nil {
		return nil, fmt.Errorf("cluster_key_file %s: %w (make one with pgplanectl cluster-key)", o.Cluster.KeyFile, err)
	}
	return key, nil
}

// adminToken reads admin_token_file; empty without one.
func (o *Options) adminToken() (string, error) {
	if o.Admin.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(o.Path(o.Admin.TokenFile))
	if err != nil {
		return "", fmt.Errorf("admin_token_file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin_token_file %s is empty", o.Admin.TokenFile)
	}
	return token, nil
}

// adminTLS loads admin_tls; nil without it.
func (o *Options) adminTLS() (*tls.Config, error) {
	if o.Admin.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.Path(o.Admin.CertFile), o.Path(o.Admin.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("admin_tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
