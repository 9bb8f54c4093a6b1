package pgwire

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgpassfile"
)

// PassfileConfig is a login whose password is in a pgpass-format file
// (host:port:database:user:password lines), read at each login so that a
// rotated file takes effect without a restart.
type PassfileConfig struct {
	Passfile        string
	User, Database  string
	ApplicationName string
}

// ConnectWithPassfile logs in to the server at addr with the password the
// file gives for it; tlsFor returns the TLS configuration of a host (nil
// for plain TCP).
func ConnectWithPassfile(addr string, pc PassfileConfig, tlsFor func(host string) *tls.Config, timeout time.Duration) (*Client, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	pf, err := pgpassfile.ReadPassfile(pc.Passfile)
	if err != nil {
		return nil, fmt.Errorf("reading the password file: %w", err)
	}
	password := pf.FindPassword(host, port, pc.Database, pc.User)
	if password == "" {
		return nil, fmt.Errorf("the password file %s has no line for %s:%s:%s:%s", pc.Passfile, host, port, pc.Database, pc.User)
	}
	cfg := ClientConfig{Addr: addr, Timeout: timeout, User: pc.User, Database: pc.Database,
		Cred: PasswordCredentials(pc.User, password), ApplicationName: pc.ApplicationName}
	if tlsFor != nil {
		cfg.TLS = tlsFor(host)
	}
	return Connect(cfg)
}
