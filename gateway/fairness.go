package gateway

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// DefaultMaxConnectionsPerSource is how many connections one source
// address may hold that have not finished authenticating (G12).
const DefaultMaxConnectionsPerSource = 100

// refusalTimeout bounds the negotiation of a connection the gateway is
// going to refuse: long enough for a client's TLS handshake and startup
// packet, so that the refusal reaches the client where it shows it.
const refusalTimeout = 2 * time.Second

// sourceTable counts, per client address, the connections that have not
// finished authenticating (G12).
type sourceTable struct {
	max     int
	mu      sync.Mutex
	pending map[netip.Addr]int
}

func newSourceTable(max int) *sourceTable {
	return &sourceTable{max: max, pending: map[netip.Addr]int{}}
}

// enter counts a new connection from addr; it reports false, counting
// nothing, when addr holds its cap already.
func (t *sourceTable) enter(addr netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[addr] >= t.max {
		return false
	}
	t.pending[addr]++
	return true
}

// leave uncounts a connection that authenticated or ended.
func (t *sourceTable) leave(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[addr] <= 1 {
		delete(t.pending, addr)
		return
	}
	t.pending[addr]--
}

// tooManyFromSource is the refusal of a connection over its address's cap.
func (g *Gateway) tooManyFromSource(addr netip.Addr) *pgwire.Error {
	return &pgwire.Error{Code: pgwire.CodeTooManyConnections, Message: fmt.Sprintf("too many connections from %s that have not finished authenticating", addr),
		Detail: fmt.Sprintf("the gateway admits at most %d such connections from one address (gateway_max_connections_per_source)", g.cfg.MaxConnectionsPerSource),
		Hint:   "close idle connections that never logged in, or try again later"}
}

// tooManyClients is PostgreSQL's refusal when it is full (G8).
func (g *Gateway) tooManyClients() *pgwire.Error {
	return &pgwire.Error{Code: pgwire.CodeTooManyConnections, Message: "sorry, too many clients already",
		Detail: fmt.Sprintf("the gateway serves at most %d connections at once (gateway_max_connections)", g.cfg.MaxConnections),
		Hint:   "try again later"}
}
