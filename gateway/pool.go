package gateway

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pgplane/pgplane/pgwire"
)

// Session pooling: a backend connection whose client leaves it idle (every
// query answered, no transaction open) is reset with DISCARD ALL and kept
// for the next client of the same server, role, database and startup
// parameters, who then skips the backend's TLS handshake and login. The
// gateway still authenticates every client itself (gateway_auth
// terminate), so a pooled connection serves only a client who proved the
// role's password.

// Defaults of the pool.
const (
	DefaultPoolSize        = 20
	DefaultPoolIdleTimeout = time.Minute
)

// poolKey says which clients a pooled connection can serve.
type poolKey struct {
	server, backend string
	// params are the startup parameters the client sent (user, database,
	// application_name, options...), sorted (startupPacket.sessionKey): a
	// connection is given only to a client that asks for the same session.
	params string
}

// pooledConn is an authenticated, idle backend connection.
type pooledConn struct {
	conn net.Conn
	r    *bufio.Reader
	// status are the ParameterStatus messages the backend sent at login and
	// since, the latest per name, encoded, to replay to the next client.
	status map[string][]byte
	// pid and secret are the backend's own cancel key.
	pid, secret uint32
	idleSince   time.Time
}

// backendPool holds the idle backend connections, at most size per
// server, each for at most idle.
type backendPool struct {
	size int
	idle time.Duration

	mu       sync.Mutex
	conns    map[poolKey][]*pooledConn
	perServe map[string]int
	sweeper  *time.Timer // runs while the pool holds connections
}

func newBackendPool(size int, idle time.Duration) *backendPool {
	return &backendPool{size: size, idle: idle, conns: map[poolKey][]*pooledConn{}, perServe: map[string]int{}}
}

// get takes an idle connection for key, or returns nil.
func (p *backendPool) get(key poolKey) *pooledConn {
	for {
		p.mu.Lock()
		list := p.conns[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := list[len(list)-1]
		p.remove(key, len(list)-1)
		p.mu.Unlock()
		if time.Since(pc.idleSince) < p.idle && pc.quiet() {
			return pc
		}
		pc.conn.Close()
	}
}

// quiet reports whether an idle backend connection has said nothing since
// it went idle: a backend that shut down or ended the session (a restart,
// pg_terminate_backend) has sent an error or closed, and must not be given
// to a client. It peeks at the socket without waiting (MSG_PEEK,
// MSG_DONTWAIT): one system call that finds nothing.
func (pc *pooledConn) quiet() bool {
	if pc.r.Buffered() > 0 {
		return false
	}
	c := pc.conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // cannot tell: the client's first query will
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		quiet = rerr == syscall.EAGAIN // nothing to read, and not closed
		return true
	})
	return err == nil && quiet
}

// put keeps an idle connection, or closes it when its server's share of
// the pool is full.
func (p *backendPool) put(key poolKey, pc *pooledConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.size <= 0 || p.perServe[key.server] >= p.size {
		pc.conn.Close()
		return
	}
	pc.idleSince = time.Now()
	p.conns[key] = append(p.conns[key], pc)
	p.perServe[key.server]++
	if p.sweeper == nil {
		p.sweeper = time.AfterFunc(p.idle, p.sweep)
	}
}

// sweep closes the connections idle too long, and runs again while any
// are left.
func (p *backendPool) sweep() {
	p.drop(func(poolKey) bool { return true })
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) > 0 {
		p.sweeper.Reset(p.idle / 2)
	} else {
		p.sweeper = nil
	}
}

// idleCount is how many connections the pool holds.
func (p *backendPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.perServe {
		n += c
	}
	return n
}

// remove drops the i-th connection of key from the pool without closing it.
func (p *backendPool) remove(key poolKey, i int) {
	list := p.conns[key]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.conns, key)
	} else {
		p.conns[key] = list
	}
	if p.perServe[key.server]--; p.perServe[key.server] <= 0 {
		delete(p.perServe, key.server)
	}
}

// drop closes the idle connections for which keep is false (a server that
// failed over or whose backend changed), and those idle too long.
func (p *backendPool) drop(keep func(poolKey) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, list := range p.conns {
		for i := len(list) - 1; i >= 0; i-- {
			if !keep(key) || time.Since(list[i].idleSince) >= p.idle {
				list[i].conn.Close()
				p.remove(key, i)
				list = p.conns[key]
			}
		}
	}
}

// closeAll closes every idle connection.
func (p *backendPool) closeAll() {
	p.drop(func(poolKey) bool { return false })
	p.mu.Lock()
	if p.sweeper != nil {
		p.sweeper.Stop()
	}
	p.mu.Unlock()
}

// frames follows the message boundaries of one direction of a session
// without copying anything, so that the gateway knows when the backend is
// idle: every query answered (as many ReadyForQuery as the client sent
// Query, Sync and FunctionCall messages) and no transaction open.
type frames struct {
	header [5]byte
	got    int   // bytes of the current header read
	left   int64 // bytes of the current message's body still to come
	typ    byte
	// onStart is called with each message's type once its header is read;
	// onFirst with the first body byte of messages whose first byte counts.
	onStart   func(typ byte)
	onFirst   func(typ, b byte)
	wantFirst bool
}

// scan follows b; it returns the offset where a message of type stop
// begins (and scans no further), or -1.
func (f *frames) scan(b []byte, stop byte) int {
	for i := 0; i < len(b); {
		if f.left > 0 {
			if f.wantFirst {
				f.onFirst(f.typ, b[i])
				f.wantFirst = false
			}
			n := int64(len(b) - i)
			if n > f.left {
				n = f.left
			}
			f.left -= n
			i += int(n)
			continue
		}
		if f.got == 0 && stop != 0 && b[i] == stop {
			return i
		}
		f.header[f.got] = b[i]
		f.got++
		i++
		if f.got < 5 {
			continue
		}
		f.typ = f.header[0]
		f.left = int64(uint32(f.header[1])<<24|uint32(f.header[2])<<16|uint32(f.header[3])<<8|uint32(f.header[4])) - 4
		f.got = 0
		if f.onStart != nil {
			f.onStart(f.typ)
		}
		f.wantFirst = f.onFirst != nil && f.left > 0
	}
	return -1
}

// atBoundary reports whether the stream is between two messages.
func (f *frames) atBoundary() bool { return f.got == 0 && f.left == 0 }

// idleTracker follows the message boundaries of both directions of a
// pooled session, to tell when its client leaves the backend idle: every
// Query, Sync and FunctionCall answered by a ReadyForQuery, the last one
// saying no transaction is open, and nothing half sent either way.
type idleTracker struct {
	mu                  sync.Mutex
	asked, answered     int64
	status              byte
	toBackend, toClient frames
}

func newIdleTracker() *idleTracker {
	t := &idleTracker{status: 'I'}
	t.toBackend.onStart = func(typ byte) {
		if typ == 'Q' || typ == 'S' || typ == 'F' {
			t.mu.Lock()
			t.asked++
			t.mu.Unlock()
		}
	}
	t.toClient.onStart = func(typ byte) {
		if typ == 'Z' {
			t.mu.Lock()
			t.answered++
			t.mu.Unlock()
		}
	}
	t.toClient.onFirst = func(typ, b byte) {
		if typ == 'Z' {
			t.mu.Lock()
			t.status = b
			t.mu.Unlock()
		}
	}
	return t
}

// clientDone reports whether the client's side is idle: every question
// answered, no transaction open, the client's direction between two
// messages. The backend's direction may still be mid-message.
func (t *idleTracker) clientDone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.asked == t.answered && t.status == 'I' && t.toBackend.atBoundary()
}

// idle reports whether the backend is idle: clientDone, and the backend's
// direction between two messages too.
func (t *idleTracker) idle() bool {
	if !t.clientDone() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.toClient.atBoundary()
}

// copyPooled copies the session like copy, following the message
// boundaries of both directions, and does not pass the client's Terminate
// on. It reports whether the client left the backend idle (idleTracker);
// the backend connection is then stopped between two messages and can be
// reset.
func (s *session) copyPooled(backend net.Conn, br *bufio.Reader) bool {
	t := newIdleTracker()
	backendDone := make(chan struct{})
	var stopping atomic.Bool // the gateway stops the backend's reader itself
	go func() {
		defer close(backendDone)
		s.bytesOut, _ = copyUntil(s.conn, br, &t.toClient, 0)
		if !stopping.Load() {
			// The backend ended the session (it shut down, or closed the
			// connection): the client must see the end too, or it waits on
			// an answer that never comes.
			closeWrite(s.conn)
		}
	}()
	// The client's Terminate, or its closing the connection, ends it; either
	// way an idle backend can serve the next client.
	s.bytesIn, _ = copyUntil(backend, s.r, &t.toBackend, 'X')
	idle := t.clientDone()
	if idle {
		// Stop the backend's reader between two messages.
		stopping.Store(true)
		backend.SetReadDeadline(time.Now())
		<-backendDone
		backend.SetReadDeadline(time.Time{})
		idle = t.idle() && br.Buffered() == 0
	} else {
		closeWrite(backend)
		<-backendDone
	}
	closeWrite(s.conn)
	s.countBytes()
	return idle
}

// resetForPool runs DISCARD ALL on an idle backend connection, keeping the
// ParameterStatus messages it sends, and reports whether the connection is
// idle again and fit for the next client.
func (s *session) resetForPool(pc *pooledConn) bool {
	pc.conn.SetDeadline(time.Now().Add(resetTimeout))
	defer pc.conn.SetDeadline(time.Time{})
	if _, err := pc.conn.Write(pgwire.AppendMessage(nil, 'Q', pgwire.AppendCString(nil, "DISCARD ALL"))); err != nil {
		return false
	}
	for {
		typ, payload, err := pgwire.ReadMessage(pc.r, pgwire.MaxAuthMessage)
		if err != nil {
			return false
		}
		switch typ {
		case 'S':
			name, _, _ := pgwire.CutCString(payload)
			pc.status[name] = pgwire.AppendMessage(nil, typ, payload)
		case 'E', 'A', 'G', 'H', 'W', 'd':
			return false // an error, a notification or COPY: not a clean reset
		case 'Z':
			return len(payload) == 1 && payload[0] == 'I' && pc.r.Buffered() == 0
		}
	}
}

// resetTimeout bounds DISCARD ALL on a connection going back to the pool.
const resetTimeout = 5 * time.Second
