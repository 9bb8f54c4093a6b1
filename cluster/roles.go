package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// Role is what a probe learned of a PostgreSQL backend's role.
type Role string

// Roles.
const (
	RoleUnknown Role = ""        // no role source, or it did not answer
	RolePrimary Role = "primary" // takes writes: pg_is_in_recovery() is false, or Patroni's leader
	RoleStandby Role = "standby" // in recovery (read-only), or not Patroni's leader
)

// Monitor is the role the nodes probe backends' roles with (C6), and
// promote standbys with under pgplane.promote auto. Its password is in a
// pgpass-format file, as the gateway's auth role's is; both may be one role.
type Monitor struct {
	User     string
	Database string
	Passfile string
	// TLS returns the TLS configuration for a backend host, or nil for
	// plain TCP (the gateway's backend TLS setting).
	TLS func(host string) *tls.Config
}

// roleQuery asks a backend whether it is in recovery.
const roleQuery = "SELECT pg_is_in_recovery()"

// promoteQuery ends a standby's recovery without waiting for it: the next
// role probe sees the promotion.
const promoteQuery = "SELECT pg_promote(false)"

// roleProber learns backends' roles. It keeps one monitoring connection per
// backend, so that a probe is one short query rather than a login.
type roleProber struct {
	monitor *Monitor // nil: SQL role probes are off
	http    *http.Client

	mu    sync.Mutex
	conns map[string]*pgwire.Client // by backend address; taken out while in use
}

func newRoleProber(m *Monitor, timeout time.Duration) *roleProber {
	return &roleProber{monitor: m, conns: map[string]*pgwire.Client{},
		http: &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: false, MaxIdleConnsPerHost: 1}}}
}

// role asks a backend for its role: its Patroni endpoint when it has one,
// else SQL when a monitoring role is configured.
func (p *roleProber) role(addr, patroni string, timeout time.Duration) (Role, error) {
	if patroni != "" {
		return p.patroniRole(patroni, timeout)
	}
	if p.monitor == nil {
		return RoleUnknown, nil
	}
	rows, err := p.query(addr, roleQuery, timeout)
	if err != nil {
		return RoleUnknown, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil {
		return RoleUnknown, fmt.Errorf("%s answered %s with %d rows", addr, roleQuery, len(rows))
	}
	if *rows[0][0] == "t" {
		return RoleStandby, nil
	}
	return RolePrimary, nil
}

// patroniRole reads a Patroni endpoint: GET /primary answers 200 on the
// leader and 503 elsewhere.
func (p *roleProber) patroniRole(endpoint string, timeout time.Duration) (Role, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/primary", nil)
	if err != nil {
		return RoleUnknown, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return RoleUnknown, fmt.Errorf("patroni %s: %w", endpoint, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return RolePrimary, nil
	case http.StatusServiceUnavailable:
		return RoleStandby, nil
	}
	return RoleUnknown, fmt.Errorf("patroni %s: GET /primary answered %s", endpoint, resp.Status)
}

// promote asks a standby to end recovery.
func (p *roleProber) promote(addr string, timeout time.Duration) error {
	if p.monitor == nil {
		return errors.New("no monitoring role (cluster_monitor_user) to promote with")
	}
	rows, err := p.query(addr, promoteQuery, timeout)
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil || *rows[0][0] != "t" {
		return fmt.Errorf("%s: %s did not return true", addr, promoteQuery)
	}
	return nil
}

// query runs one query on the backend's monitoring connection, logging in
// first when there is none. A connection that failed is closed, so a
// timed-out query never leaves a half-read answer for the next one.
func (p *roleProber) query(addr, sql string, timeout time.Duration) ([][]*string, error) {
	p.mu.Lock()
	c := p.conns[addr]
	delete(p.conns, addr)
	p.mu.Unlock()
	if c == nil {
		var err error
		if c, err = p.connect(addr, timeout); err != nil {
			return nil, err
		}
	}
	c.SetTimeout(timeout)
	rows, err := c.Query(sql)
	if pgwire.IsConnectionError(err) {
		c.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	p.mu.Lock()
	if old := p.conns[addr]; old != nil {
		old.Close()
	}
	p.conns[addr] = c
	p.mu.Unlock()
	return rows, err
}

func (p *roleProber) connect(addr string, timeout time.Duration) (*pgwire.Client, error) {
	m := p.monitor
	c, err := pgwire.ConnectWithPassfile(addr, pgwire.PassfileConfig{Passfile: m.Passfile, User: m.User, Database: m.Database,
		ApplicationName: "pgplane monitor"}, m.TLS, timeout)
	if err != nil {
		return nil, fmt.Errorf("monitoring role %s: %w", m.User, err)
	}
	return c, nil
}

// forget closes the monitoring connections of backends no longer probed.
func (p *roleProber) forget(keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		if !keep[addr] {
			c.Close()
			delete(p.conns, addr)
		}
	}
}

// close closes every monitoring connection.
func (p *roleProber) close() { p.forget(nil) }
