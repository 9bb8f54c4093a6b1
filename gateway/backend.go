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
	"github.com/pgplane/pgplane/topology"
)

// The backend: dialing it, finishing its login, and passing the session
// through, from a pooled connection or a new one.

// dialBackend connects to the server's backend, over TLS unless disabled
// (G7), and sends the startup message.
func (s *session) dialBackend(si *topology.ServerInfo, p *startupPacket) (net.Conn, *bufio.Reader, error) {
	host, _, _ := net.SplitHostPort(si.Backend)
	backend, br, err := pgwire.Dial(si.Backend, s.g.backendTLSConfig(host), s.g.cfg.DialTimeout)
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
	key := s.g.sessions.newKey(backendKey{server: si.Server.Name, addr: si.Backend, pid: pc.pid, secret: pc.secret})
	defer s.g.sessions.forget(key)
	var k [8]byte
	binary.BigEndian.PutUint32(k[:], key.pid)
	binary.BigEndian.PutUint32(k[4:], key.secret)
	out = pgwire.AppendMessage(out, 'K', k[:])
	out = pgwire.AppendMessage(out, 'Z', []byte{'I'})
	if _, err := s.conn.Write(out); err != nil {
		pc.conn.Close()
		return err
	}
	s.decision = decisionProxied
	s.raw.SetDeadline(time.Time{})
	pc.conn.SetDeadline(time.Time{})
	s.backend, s.backendAddr = pc.conn, si.Backend
	s.g.sessions.startProxy(s)
	defer s.g.sessions.endProxy(s)
	if cur := s.g.snapshot.Load().Server(si.Server.Name); cur == nil || cur.Backend != si.Backend {
		// The server moved while this session logged in.
		s.reason = "closed: the server's backend changed (failover) while it logged in"
		pc.conn.Close()
		return nil
	}
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

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		c.CloseWrite()
	case *tls.Conn:
		c.CloseWrite()
	default:
		c.Close()
	}
}
