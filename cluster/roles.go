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

// roleProber learns backends' roles. Each backend address (and Patroni
// endpoint) has one monitor goroutine that keeps one connection open and
// asks once per probe interval; the probe round reads the latest answer.
// So a probe round never waits for a login, servers that share a backend
// share its monitor, and a slow or overloaded backend gets at most one
// login attempt per monitor per loginBackoff, never a storm of them.
type roleProber struct {
	monitor  *Monitor // nil: SQL role probes are off
	interval time.Duration
	timeout  time.Duration // of one role query
	http     *http.Client

	mu       sync.Mutex
	monitors map[string]*roleMonitor // by backend address, or Patroni endpoint
}

// loginTimeout bounds a monitoring login (TLS and SCRAM), which takes far
// longer than a query on a kept connection; loginBackoff spaces the login
// attempts to one backend.
const (
	loginTimeout = 3 * time.Second
	loginBackoff = time.Second
)

func newRoleProber(m *Monitor, interval, timeout time.Duration) *roleProber {
	return &roleProber{monitor: m, interval: interval, timeout: timeout, monitors: map[string]*roleMonitor{},
		http: &http.Client{Timeout: timeout}}
}

// roleMonitor asks one backend for its role, in a goroutine of its own.
type roleMonitor struct {
	p        *roleProber
	addr     string
	patroni  string
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	role     Role
	err      error
	at       time.Time // of the last answer, or failure
	conn     *pgwire.Client
	lastDial time.Time
}

// role returns the latest role learned of a backend: from its Patroni
// endpoint when it has one, else by SQL when a monitoring role is
// configured. An answer older than three probe intervals is no answer.
func (p *roleProber) role(addr, patroni string) (Role, error) {
	if patroni == "" && p.monitor == nil {
		return RoleUnknown, nil
	}
	key := addr
	if patroni != "" {
		key = patroni
	}
	p.mu.Lock()
	m := p.monitors[key]
	if m == nil {
		m = &roleMonitor{p: p, addr: addr, patroni: patroni, stop: make(chan struct{}), done: make(chan struct{})}
		p.monitors[key] = m
		go m.run()
	}
	p.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.at.IsZero():
		return RoleUnknown, nil // not asked yet
	case time.Since(m.at) > 3*p.interval+p.timeout:
		return RoleUnknown, fmt.Errorf("%s: no answer to the role probe for %s", addr, time.Since(m.at).Round(time.Millisecond))
	}
	return m.role, m.err
}

func (m *roleMonitor) run() {
	defer close(m.done)
	t := time.NewTicker(m.p.interval)
	defer t.Stop()
	for {
		role, err := m.ask()
		m.mu.Lock()
		m.role, m.err, m.at = role, err, time.Now()
		m.mu.Unlock()
		select {
		case <-m.stop:
			if m.conn != nil {
				m.conn.Close()
			}
			return
		case <-t.C:
		}
	}
}

// ask asks once.
func (m *roleMonitor) ask() (Role, error) {
	if m.patroni != "" {
		return m.p.patroniRole(m.patroni)
	}
	if m.conn == nil {
		if time.Since(m.lastDial) < loginBackoff {
			return RoleUnknown, m.err
		}
		m.lastDial = time.Now()
		c, err := m.p.connect(m.addr, loginTimeout)
		if err != nil {
			return RoleUnknown, err
		}
		m.conn = c
	}
	m.conn.SetTimeout(m.p.timeout)
	rows, err := m.conn.Query(roleQuery)
	if pgwire.IsConnectionError(err) {
		// A query that timed out leaves its answer half read: start over.
		m.conn.Close()
		m.conn = nil
		return RoleUnknown, fmt.Errorf("%s: %w", m.addr, err)
	}
	if err != nil {
		return RoleUnknown, fmt.Errorf("%s: %s: %w", m.addr, roleQuery, err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil {
		return RoleUnknown, fmt.Errorf("%s answered %s with %d rows", m.addr, roleQuery, len(rows))
	}
	if *rows[0][0] == "t" {
		return RoleStandby, nil
	}
	return RolePrimary, nil
}

// patroniRole reads a Patroni endpoint: GET /primary answers 200 on the
// leader and 503 elsewhere.
func (p *roleProber) patroniRole(endpoint string) (Role, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
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

// promote asks a standby to end recovery, on a connection of its own.
func (p *roleProber) promote(addr string, timeout time.Duration) error {
	if p.monitor == nil {
		return errors.New("no monitoring role (cluster_monitor_user) to promote with")
	}
	c, err := p.connect(addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	rows, err := c.Query(promoteQuery)
	var pe *pgwire.Error
	if errors.As(err, &pe) && pe.Code == pgwire.CodeNotInPrerequisiteState {
		return nil // "recovery is not in progress": promoted already (another server on the same pair, or a node before)
	}
	if err != nil {
		return fmt.Errorf("%s: %s: %w", addr, promoteQuery, err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil || *rows[0][0] != "t" {
		return fmt.Errorf("%s: %s did not return true", addr, promoteQuery)
	}
	return nil
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

// forget stops the monitors of backends no longer probed.
func (p *roleProber) forget(keep map[string]bool) {
	p.mu.Lock()
	var stopped []*roleMonitor
	for key, m := range p.monitors {
		if !keep[key] {
			close(m.stop)
			stopped = append(stopped, m)
			delete(p.monitors, key)
		}
	}
	p.mu.Unlock()
	for _, m := range stopped {
		<-m.done
	}
}

// close stops every monitor.
func (p *roleProber) close() { p.forget(nil) }
