package gateway

import (
	"fmt"
	"sync"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// secret is what the gateway knows of a role's password: a SCRAM verifier,
// an MD5 hash, or nothing (mock authentication).
type secret struct {
	scram pgwire.Verifier
	md5   string
	mock  bool
	why   string // why the secret is a mock one, for the log
}

// verifierKey names a role on a backend, looked up with one auth role.
type verifierKey struct {
	backend, authRole, role string
}

type verifierEntry struct {
	ready   chan struct{}
	sec     secret
	err     error
	expires time.Time
}

// maxVerifierEntries bounds the cache; past it, entries are not kept.
const maxVerifierEntries = 20000

// verifierCache looks verifiers up on the backends through the auth role
// and keeps them briefly. Concurrent lookups of one role share one query.
// The cache only saves work: the backend checks the ClientKey itself at
// login, so a stale entry can never admit a password the backend refuses.
type verifierCache struct {
	g       *Gateway
	mu      sync.Mutex
	entries map[verifierKey]*verifierEntry
	conns   map[[2]string]*authConn // by backend and auth role
}

// authConn is one lookup connection to a backend, used by one query at a
// time.
type authConn struct {
	mu       sync.Mutex
	c        *pgwire.Client
	lastUsed time.Time
}

// authConnIdle is how long an unused lookup connection stays open.
const authConnIdle = time.Minute

func newVerifierCache(g *Gateway) *verifierCache {
	return &verifierCache{g: g, entries: map[verifierKey]*verifierEntry{}, conns: map[[2]string]*authConn{}}
}

// lookup returns the secret of role on backend, from the cache or the
// backend.
func (vc *verifierCache) lookup(backend, authRole, role string) (secret, error) {
	k := verifierKey{backend, authRole, role}
	now := time.Now()
	vc.mu.Lock()
	e := vc.entries[k]
	if e != nil {
		select {
		case <-e.ready:
			if now.After(e.expires) || e.err != nil {
				e = nil
			}
		default:
		}
	}
	if e == nil {
		e = &verifierEntry{ready: make(chan struct{})}
		if len(vc.entries) >= maxVerifierEntries {
			vc.sweep(now)
		}
		if len(vc.entries) < maxVerifierEntries {
			vc.entries[k] = e
		}
		vc.mu.Unlock()
		e.sec, e.err = vc.fetch(backend, authRole, role)
		e.expires = time.Now().Add(vc.g.cfg.AuthCacheTTL)
		close(e.ready)
	} else {
		vc.mu.Unlock()
		<-e.ready
	}
	return e.sec, e.err
}

// forget drops a role's entry, so that the next attempt asks the backend
// again: after a failed proof (the password may have changed) or a login
// the backend refused.
func (vc *verifierCache) forget(backend, authRole, role string) {
	vc.mu.Lock()
	delete(vc.entries, verifierKey{backend, authRole, role})
	vc.mu.Unlock()
}

// sweep drops expired entries; the caller holds vc.mu.
func (vc *verifierCache) sweep(now time.Time) {
	for k, e := range vc.entries {
		select {
		case <-e.ready:
			if now.After(e.expires) {
				delete(vc.entries, k)
			}
		default:
		}
	}
}

// fetch asks the backend for a role's stored password, reconnecting once
// when a kept connection has gone away.
func (vc *verifierCache) fetch(backend, authRole, role string) (secret, error) {
	vc.mu.Lock()
	ac := vc.conns[[2]string{backend, authRole}]
	if ac == nil {
		ac = &authConn{}
		vc.conns[[2]string{backend, authRole}] = ac
	}
	vc.mu.Unlock()
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.c != nil && time.Since(ac.lastUsed) > authConnIdle {
		ac.c.Close()
		ac.c = nil
	}
	for attempt := 0; ; attempt++ {
		fresh := ac.c == nil
		if fresh {
			c, err := vc.connect(backend, authRole)
			if err != nil {
				return secret{}, err
			}
			ac.c = c
		}
		rows, err := ac.c.Query(pgwire.VerifierQuery, role)
		ac.lastUsed = time.Now()
		if pgwire.IsConnectionError(err) {
			ac.c.Close()
			ac.c = nil
			if !fresh && attempt == 0 {
				continue
			}
		}
		if err != nil {
			return secret{}, fmt.Errorf("looking up role %q on %s as %s: %w", role, backend, authRole, err)
		}
		return secretOf(rows), nil
	}
}

// secretOf reads the lookup's answer.
func secretOf(rows [][]*string) secret {
	if len(rows) == 0 || len(rows[0]) == 0 || rows[0][0] == nil || *rows[0][0] == "" {
		return secret{mock: true, why: "the role does not exist, cannot log in, or has no password"}
	}
	stored := *rows[0][0]
	if pgwire.IsMD5Hash(stored) {
		return secret{md5: stored}
	}
	v, err := pgwire.ParseVerifier(stored)
	if err != nil {
		return secret{mock: true, why: err.Error()}
	}
	return secret{scram: v}
}

// connect logs in to a backend as the auth role, with its password from
// the password file (read each time, so a rotated file takes effect).
func (vc *verifierCache) connect(backend, authRole string) (*pgwire.Client, error) {
	cfg := vc.g.cfg
	c, err := pgwire.ConnectWithPassfile(backend, pgwire.PassfileConfig{Passfile: cfg.AuthPassfile, User: authRole, Database: cfg.AuthDatabase,
		ApplicationName: "pgplane gateway auth"}, vc.g.backendTLSConfig, cfg.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("gateway_auth_user %s: %w", authRole, err)
	}
	return c, nil
}

// close closes the lookup connections.
func (vc *verifierCache) close() {
	vc.mu.Lock()
	conns := vc.conns
	vc.conns = map[[2]string]*authConn{}
	vc.mu.Unlock()
	for _, ac := range conns {
		ac.mu.Lock()
		if ac.c != nil {
			ac.c.Close()
			ac.c = nil
		}
		ac.mu.Unlock()
	}
}
