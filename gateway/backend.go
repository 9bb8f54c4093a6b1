package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/relay"
	"github.com/pgplane/pgplane/topology"
)

// The backend: dialing it, finishing its login, and passing the session
// through, from a pooled connection or a new one.

// dialBackend connects to the server's backend, over TLS unless disabled
// (G7), and sends the startup message.
func (s *session) dialBackend(si *topology.ServerInfo, p *startupPacket) (net.Conn, *bufio.Reader, error) {
	host, _, _ := net.SplitHostPort(si.Backend())
	c, err := net.DialTimeout("tcp", si.Backend(), s.g.cfg.DialTimeout)
	var backend net.Conn
	var br *bufio.Reader
	if err == nil {
		if s.g.relay != nil {
			c = relay.NewSocket(c)
		}
		backend, br, err = pgwire.Secure(c, si.Backend(), s.g.backendTLSConfig(host), s.g.cfg.DialTimeout)
	}
	if err != nil {
		return nil, nil, refuse(decisionBackendDown, &pgwire.Error{Code: pgwire.CodeConnectionFailure, Message: fmt.Sprintf("server %q is not reachable: its backend does not answer", si.Server.Name),
			Hint: "try again in a moment; if it persists, the server may be down or failing over"}).wrapping(err)
	}
	backend.SetDeadline(s.started.Add(s.g.cfg.AuthTimeout))
	if _, err := backend.Write(p.encodeForBackend()); err != nil {
		backend.Close()
		return nil, nil, err
	}
	return backend, br, nil
}

// finishLogin reads the backend's messages after authentication up to
// ReadyForQuery, adding them to out (what the client is told of its login),
// and keeps what a later client of a pooled connection needs: the
// ParameterStatus messages and the backend's own cancel key (the client
// gets the gateway's, G2a). It closes the backend when it fails.
func (s *session) finishLogin(backend net.Conn, br *bufio.Reader, out []byte) (login *pooledConn, _ []byte, err error) {
	s.authenticated()
	defer func() {
		if err != nil {
			backend.Close()
		}
	}()
	login = &pooledConn{conn: backend, r: br, status: map[string][]byte{}}
	for {
		typ, payload, err := pgwire.ReadMessage(br, pgwire.MaxAuthMessage)
		if err != nil {
			return nil, nil, fmt.Errorf("reading from backend: %w", err)
		}
		switch typ {
		case 'K':
			if len(payload) != 8 {
				return nil, nil, fmt.Errorf("%w: BackendKeyData of %d bytes", pgwire.ErrProtocol, len(payload))
			}
			login.pid, login.secret = binary.BigEndian.Uint32(payload), binary.BigEndian.Uint32(payload[4:])
			continue // the gateway's own key goes to the client in passThrough
		case 'S':
			name, _, _ := pgwire.CutCString(payload)
			login.status[name] = pgwire.AppendMessage(nil, typ, payload)
		case 'E':
			if _, err := s.conn.Write(pgwire.AppendMessage(out, typ, payload)); err != nil {
				return nil, nil, err
			}
			return nil, nil, refuse(decisionBackendRejected, nil).because(pgwire.ParseError(payload).Message) // relayed as sent
		case 'Z':
			return login, out, nil // ReadyForQuery goes to the client after the key, in passThrough
		}
		out = pgwire.AppendMessage(out, typ, payload)
	}
}

// passThrough finishes the client's login (out, then the gateway's cancel
// key and ReadyForQuery), copies the session both ways, and gives the
// backend connection back to the pool when the client left it idle.
func (s *session) passThrough(si *topology.ServerInfo, pc *pooledConn, out []byte) error {
	key := s.g.sessions.newKey(backendKey{server: si.Server.Name, addr: si.Backend(), pid: pc.pid, secret: pc.secret})
	var k [8]byte
	binary.BigEndian.PutUint32(k[:], key.pid)
	binary.BigEndian.PutUint32(k[4:], key.secret)
	out = pgwire.AppendMessage(out, 'K', k[:])
	out = pgwire.AppendMessage(out, 'Z', []byte{'I'})
	if _, err := s.conn.Write(out); err != nil {
		s.g.sessions.forget(key)
		pc.conn.Close()
		return err
	}
	s.decision = decisionProxied
	s.raw.SetDeadline(time.Time{})
	pc.conn.SetDeadline(time.Time{})
	s.backend, s.backendAddr = pc.conn, si.Backend()
	s.g.sessions.startProxy(s)
	if cur := s.g.snapshot.Load().Server(si.Server.Name); cur == nil || cur.Backend() != si.Backend() {
		// The server moved while this session logged in.
		s.reason = "closed: the server's backend changed (failover) while it logged in"
		s.unregister(key)
		pc.conn.Close()
		return nil
	}
	if s.g.relay != nil && relayable(s.raw) && relayable(pc.conn) {
		// The relay's loops copy from here, and end the session.
		s.relayed = true
		s.relay(pc, key)
		return nil
	}
	defer s.unregister(key)
	if s.poolKey == nil {
		defer pc.conn.Close()
		err := s.copy(pc.conn, pc.r)
		s.noteMoved()
		return err
	}
	if s.copyPooled(pc.conn, pc.r) && !s.moved.Load() && s.resetForPool(pc) {
		s.g.pool.put(*s.poolKey, pc)
		return nil
	}
	pc.conn.Close()
	s.noteMoved()
	return nil
}

// relay hands the session to the relay's loops. Bytes from the client are
// leg 0, from the backend leg 1; a pooled session is followed message by
// message, and when its client leaves the backend idle the backend
// connection comes back to Go's poller, is reset and goes to the pool.
func (s *session) relay(pc *pooledConn, key cancelKey) {
	legs := [2]relay.Leg{
		{Socket: socketOf(s.raw), Reader: unbuffered(s.r, s.conn), Writer: s.conn},
		{Socket: socketOf(pc.conn), Reader: unbuffered(pc.r, pc.conn), Writer: pc.conn},
	}
	var end func(from int, stopped bool) bool
	var idle *idleTracker
	clientLeftIdle := false
	if s.poolKey != nil {
		idle = newIdleTracker()
		legs[0].Scan = func(b []byte) (int, bool) {
			if at := idle.toBackend.scan(b, 'X'); at >= 0 {
				return at, true
			}
			return len(b), false
		}
		legs[1].Scan = func(b []byte) (int, bool) {
			idle.toClient.scan(b, 0)
			return len(b), false
		}
		end = func(from int, _ bool) bool {
			// The client's Terminate, or its closing the connection, ends
			// the session; an idle backend can serve the next client.
			clientLeftIdle = from == 0 && idle.idle() && pc.r.Buffered() == 0
			return clientLeftIdle
		}
	}
	done := func(r relay.Result) {
		s.bytesIn, s.bytesOut = r.Bytes[0], r.Bytes[1]
		s.countBytes()
		if clientLeftIdle && r.Err == nil && !s.moved.Load() && socketOf(pc.conn).Reattach() == nil && s.resetForPool(pc) {
			s.g.pool.put(*s.poolKey, pc)
		} else {
			pc.conn.Close()
		}
		s.noteMoved()
		s.unregister(key)
		s.end()
	}
	if err := s.g.relay.Relay(relay.Pair{Legs: legs, End: end, Done: done}); err != nil {
		// Nothing moved: the client's socket was closed meanwhile (Stop,
		// or a failover of the server). The session ends here.
		s.relayed = false
		s.unregister(key)
		pc.conn.Close()
		s.reason = "closed: " + err.Error()
	}
}

// unbuffered returns what a relay reads a leg from: the connection itself
// when its bufio.Reader holds nothing, which spares every read a layer.
func unbuffered(r *bufio.Reader, c net.Conn) io.Reader {
	if r.Buffered() > 0 {
		return r
	}
	return c
}

// socketOf returns the relay Socket under a connection, or nil.
func socketOf(c net.Conn) *relay.Socket {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if bc, ok := c.(*bufferedConn); ok {
		c = bc.Conn
	}
	sock, _ := c.(*relay.Socket)
	return sock
}

// relayable reports whether a connection can move into a relay loop.
func relayable(c net.Conn) bool {
	sock := socketOf(c)
	return sock != nil && sock.Relayable()
}

// unregister takes a proxied session out of the session table: it is no
// longer closed by a failover, and its cancel key no longer reaches a
// backend.
func (s *session) unregister(key cancelKey) {
	s.g.sessions.endProxy(s)
	s.g.sessions.forget(key)
}

func (s *session) noteMoved() {
	if s.moved.Load() {
		s.reason = "closed: the server's backend changed (failover); the client reconnects to the new one"
	}
}

// copy moves bytes both ways until one side closes, without parsing them.
func (s *session) copy(backend net.Conn, br *bufio.Reader) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.bytesOut, _ = copyUntil(s.conn, br, nil, 0)
		closeWrite(s.conn)
	}()
	s.bytesIn, _ = copyUntil(backend, s.r, nil, 0)
	closeWrite(backend)
	wg.Wait()
	s.countBytes()
	return nil
}

// countBytes adds the session's copied bytes to the metrics.
func (s *session) countBytes() {
	bytesTotal.WithLabelValues("in").Add(float64(s.bytesIn))
	bytesTotal.WithLabelValues("out").Add(float64(s.bytesOut))
}

// copyBuffers hold the 16 KiB buffers (one TLS record) of the copy phase.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copyBuffer is one direction's read buffer in the copy phase: a small one
// of its own while the traffic is a message now and then, and a pooled
// 16 KiB one while a read fills the small one (a burst: a large result, a
// COPY). A session that waits for its next message, as most pooled
// application connections do most of the time, holds 512 bytes per
// direction rather than 16 KiB.
type copyBuffer struct {
	small [512]byte
	big   *[]byte
}

// next returns the buffer for the next read.
func (b *copyBuffer) next() []byte {
	if b.big != nil {
		return *b.big
	}
	return b.small[:]
}

// read records how much a read returned: a full small buffer takes a big
// one, a big one not filled goes back to the pool.
func (b *copyBuffer) read(n int) {
	switch {
	case b.big == nil && n == len(b.small):
		b.big = copyBuffers.Get().(*[]byte)
	case b.big != nil && n < len(*b.big):
		b.release()
	}
}

// release gives the big buffer back, if any.
func (b *copyBuffer) release() {
	if b.big != nil {
		copyBuffers.Put(b.big)
		b.big = nil
	}
}

// copyUntil copies what r reads to dst, with a plain read and a write per
// chunk, until it ends or, following frames (when f is not nil), a message
// of type stop begins (not copied); it reports the bytes copied and whether
// stop was seen. r's buffer holds 512 bytes: reads into the copy buffer go
// around it once it is drained. It does not let io.Copy splice plain TCP
// legs: PostgreSQL traffic is many small messages, and splice's two
// syscalls through a pipe per chunk cost more CPU per transaction than a
// read and a write (measured with bench-gateway).
func copyUntil(dst io.Writer, r *bufio.Reader, f *frames, stop byte) (int64, bool) {
	var buf copyBuffer
	defer buf.release()
	var n int64
	for {
		k, err := r.Read(buf.next())
		if k > 0 {
			b := buf.next()[:k]
			at := -1
			if f != nil {
				at = f.scan(b, stop)
			}
			if at >= 0 {
				b = b[:at]
			}
			w, werr := dst.Write(b)
			n += int64(w)
			if at >= 0 {
				return n, true
			}
			if werr != nil {
				return n, false
			}
		}
		if err != nil {
			return n, false
		}
		buf.read(k)
	}
}

// closeWrite shuts a connection's write side down: a TLS close_notify, or
// a TCP FIN.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
