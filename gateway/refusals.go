package gateway

import (
	"net/netip"
	"sync"
	"time"
)

// refusalMemory remembers, for a few seconds, why a TLS connection was
// refused. libpq's default sslmode=prefer retries in plaintext after any
// error, and the retry carries no TLS server name; without this memory the
// second error would be "which server?" instead of the real reason.
type refusalMemory struct {
	mu      sync.Mutex
	entries map[refusalKey]refusal
}

type refusalKey struct {
	client   netip.Addr
	user, db string
}

type refusal struct {
	err      *pgError
	decision string
	server   string
	expires  time.Time
}

const (
	refusalTTL     = 10 * time.Second
	refusalEntries = 10000
)

func newRefusalMemory() *refusalMemory {
	return &refusalMemory{entries: map[refusalKey]refusal{}}
}

func (m *refusalMemory) remember(k refusalKey, r refusal) {
	now := time.Now()
	r.expires = now.Add(refusalTTL)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) >= refusalEntries {
		for key, e := range m.entries {
			if now.After(e.expires) {
				delete(m.entries, key)
			}
		}
		if len(m.entries) >= refusalEntries {
			return // under a flood, forget rather than grow
		}
	}
	m.entries[k] = r
}

func (m *refusalMemory) recall(k refusalKey) (refusal, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.entries[k]
	if !ok || time.Now().After(r.expires) {
		delete(m.entries, k)
		return refusal{}, false
	}
	return r, true
}
