package pgplane

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/topology"

	"github.com/coredns/caddy"
)

// adminOptions are the admin properties of the pgplane block.
type adminOptions struct {
	listen    string
	tokenFile string
	tlsFiles  []string // certificate and key, for HTTPS
}

func parseAdminProperty(c *caddy.Controller, o *adminOptions) (bool, error) {
	name := c.Val()
	if name != "admin" && name != "admin_token_file" && name != "admin_tls" {
		return false, nil
	}
	args := c.RemainingArgs()
	if name == "admin_tls" {
		if len(args) != 2 {
			return true, c.Errf("admin_tls: want CERT_FILE KEY_FILE")
		}
		o.tlsFiles = args
		return true, nil
	}
	if len(args) != 1 {
		return true, c.ArgErr()
	}
	if name == "admin" {
		if _, err := netip.ParseAddrPort(args[0]); err != nil {
			return true, c.Errf("admin %q: want IP:port", args[0])
		}
		o.listen = args[0]
	} else {
		o.tokenFile = args[0]
	}
	return true, nil
}

// newAdmin starts the admin API, or does nothing without an admin line.
func (p *PGPlane) newAdmin(o adminOptions) error {
	if o.listen == "" {
		return nil
	}
	cfg := api.Config{
		Listen:   o.listen,
		Snapshot: func() *topology.Snapshot { return p.answers.Load().snap },
		Desired:  api.DesiredFunc(p.change),
		Health:   p.health,
		Logger:   newLogger("pgplane/admin"),
	}
	if p.cluster != nil {
		cfg.Cluster = p.cluster
	}
	if o.tokenFile != "" {
		b, err := os.ReadFile(resolve(p.base, o.tokenFile))
		if err != nil {
			return fmt.Errorf("admin_token_file: %w", err)
		}
		if cfg.Token = strings.TrimSpace(string(b)); cfg.Token == "" {
			return fmt.Errorf("admin_token_file %s is empty", o.tokenFile)
		}
	}
	if len(o.tlsFiles) == 2 {
		cert, err := tls.LoadX509KeyPair(resolve(p.base, o.tlsFiles[0]), resolve(p.base, o.tlsFiles[1]))
		if err != nil {
			return fmt.Errorf("admin_tls: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s, err := api.New(cfg)
	if err != nil {
		return err
	}
	p.admin = s
	return s.Start()
}
