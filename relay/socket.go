package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is a TCP connection that starts in Go's poller, as an ordinary
// net.Conn, and can be moved into a relay loop once its session only copies
// bytes. Layers built on it before the move (a tls.Conn, a bufio.Reader)
// keep working in the loop: there a read that would block returns
// ErrWouldBlock, which they pass up without recording it, and a write that
// the socket cannot take at once is queued and sent when it can.
//
// A Socket in a loop belongs to the loop's thread. Close may be called from
// any goroutine: on a Socket in a loop it ends the relay, whose Done then
// owns the Socket.
type Socket struct {
	mu    sync.Mutex
	conn  net.Conn // while in Go's poller
	fd    int      // once taken from Go's poller
	state socketState
	leg   *leg // while in a loop

	// Used only by the loop's thread.
	readable   bool   // the loop saw it readable and no read has come up short since
	pending    []byte // written but not yet taken by the kernel
	shutAfter  bool   // shut the write side down once pending is sent
	writeShut  bool
	writeError error
	// maxPending is the most bytes pending at once (back-pressure bounds
	// it to about one read).
	maxPending int
}

type socketState uint8

const (
	inGo     socketState = iota // an ordinary net.Conn
	inLoop                      // relayed by a loop
	detached                    // out of its loop; only Close or Reattach
	closed
)

// ErrWouldBlock is returned by a Socket in a loop when it has nothing to
// read yet. It is a temporary net.Error, so crypto/tls and bufio keep their
// state and can be read again later.
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "relay: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// NewSocket wraps a connection. Only a connection with a file descriptor
// (syscall.Conn, as *net.TCPConn) can later move into a loop; any other is
// served in Go's poller for its whole life.
func NewSocket(c net.Conn) *Socket { return &Socket{conn: c, fd: -1} }

// Relayable reports whether the socket can move into a loop.
func (s *Socket) Relayable() bool {
	_, ok := s.goConn().(syscall.Conn)
	return ok
}

// Read reads from the connection; in a loop it reads the file descriptor
// without waiting, and only while the loop has seen it readable.
func (s *Socket) Read(b []byte) (int, error) {
	if s.conn != nil {
		return s.conn.Read(b)
	}
	if s.state != inLoop || !s.readable {
		if s.state == inLoop {
			return 0, ErrWouldBlock
		}
		return 0, net.ErrClosed
	}
	for {
		n, err := rawIO(unix.SYS_READ, s.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			s.readable = false
			return 0, ErrWouldBlock
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		if n < len(b) {
			// Level-triggered epoll reports the socket again if more came.
			s.readable = false
		}
		return n, nil
	}
}

// Write writes to the connection; in a loop it takes all of b at once,
// queueing what the kernel does not take yet.
func (s *Socket) Write(b []byte) (int, error) {
	if s.conn != nil {
		return s.conn.Write(b)
	}
	switch {
	case s.state == detached:
		// Only a TLS close_notify on the way to Close: best effort.
		unix.Write(s.fd, b)
		return len(b), nil
	case s.state != inLoop:
		return 0, net.ErrClosed
	case s.writeError != nil:
		return 0, s.writeError
	case len(s.pending) > 0:
		s.pending = append(s.pending, b...)
		s.maxPending = max(s.maxPending, len(s.pending))
		return len(b), nil
	}
	n, err := s.write(b)
	if err != nil {
		return n, err
	}
	if n < len(b) {
		s.pending = append(s.pending, b[n:]...)
		s.maxPending = max(s.maxPending, len(s.pending))
	}
	return len(b), nil
}

// write writes what the kernel takes now.
func (s *Socket) write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := rawIO(unix.SYS_WRITE, s.fd, b[done:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return done, nil
		case err != nil:
			s.writeError = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
			return done, s.writeError
		}
		done += n
	}
	return done, nil
}

// flush sends what is pending, and shuts the write side down after it when
// asked; it reports whether anything is still pending.
func (s *Socket) flush() (bool, error) {
	if len(s.pending) > 0 {
		n, err := s.write(s.pending)
		if err != nil {
			return false, err
		}
		rest := copy(s.pending, s.pending[n:])
		s.pending = s.pending[:rest]
		if rest > 0 {
			return true, nil
		}
		s.pending = nil
	}
	if s.shutAfter && !s.writeShut {
		s.writeShut = true
		unix.Shutdown(s.fd, unix.SHUT_WR)
	}
	return false, nil
}

// CloseWrite shuts the write side down (in a loop, once what is pending is
// sent).
func (s *Socket) CloseWrite() error {
	if s.conn != nil {
		if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	if s.state == inLoop {
		s.shutAfter = true
		_, err := s.flush()
		return err
	}
	return nil
}

// Close closes the connection. A Socket in a loop is not closed at once:
// its relay ends, and the relay's Done closes or reattaches it.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case inGo:
		s.state = closed
		return s.conn.Close()
	case inLoop:
		s.leg.pair.loop.abort(s.leg.pair)
		return nil
	case detached:
		s.state = closed
		return unix.Close(s.fd)
	}
	return net.ErrClosed
}

// take moves the socket out of Go's poller: it duplicates the file
// descriptor, which no poller knows, and closes the net.Conn (the socket
// stays open through the duplicate).
func (s *Socket) take(l *leg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != inGo {
		return net.ErrClosed
	}
	sc, ok := s.conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("relay: %T has no file descriptor", s.conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(orig uintptr) {
		fd, dupErr = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if dupErr != nil {
		return fmt.Errorf("relay: duplicating the socket: %w", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("relay: %w", err)
	}
	s.conn.Close()
	s.conn, s.fd, s.state, s.leg = nil, fd, inLoop, l
	return nil
}

// detach marks the socket out of its loop (the loop has removed it).
func (s *Socket) detach() {
	s.mu.Lock()
	if s.state == inLoop {
		s.state = detached
	}
	s.leg = nil
	s.mu.Unlock()
}

// Reattach puts a socket whose relay ended back into Go's poller, as an
// ordinary net.Conn again (a pooled backend connection that is reset and
// kept). Anything queued and not yet sent is an error.
func (s *Socket) Reattach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != detached {
		return net.ErrClosed
	}
	if len(s.pending) > 0 || s.writeShut {
		return errors.New("relay: socket has unsent bytes or a closed write side")
	}
	f := os.NewFile(uintptr(s.fd), "relay")
	c, err := net.FileConn(f) // a duplicate, in Go's poller
	f.Close()
	s.fd = -1
	if err != nil {
		s.state = closed
		return fmt.Errorf("relay: reattaching: %w", err)
	}
	s.conn, s.state, s.readable = c, inGo, false
	return nil
}

// LocalAddr returns the local address, while the socket is in Go's poller.
func (s *Socket) LocalAddr() net.Addr {
	if c := s.goConn(); c != nil {
		return c.LocalAddr()
	}
	return nil
}

// RemoteAddr returns the remote address, while the socket is in Go's poller.
func (s *Socket) RemoteAddr() net.Addr {
	if c := s.goConn(); c != nil {
		return c.RemoteAddr()
	}
	return nil
}

func (s *Socket) goConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// SetDeadline sets the deadlines of a socket in Go's poller; in a loop,
// where nothing waits, it does nothing.
func (s *Socket) SetDeadline(t time.Time) error {
	if c := s.goConn(); c != nil {
		return c.SetDeadline(t)
	}
	return nil
}

// SetReadDeadline is SetDeadline for reads.
func (s *Socket) SetReadDeadline(t time.Time) error {
	if c := s.goConn(); c != nil {
		return c.SetReadDeadline(t)
	}
	return nil
}

// SetWriteDeadline is SetDeadline for writes.
func (s *Socket) SetWriteDeadline(t time.Time) error {
	if c := s.goConn(); c != nil {
		return c.SetWriteDeadline(t)
	}
	return nil
}

// SyscallConn gives the raw connection of a socket in Go's poller, for
// calls such as a peek that asks whether an idle connection is still quiet.
func (s *Socket) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := s.goConn().(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("relay: socket not in Go's poller")
}

// rawIO reads or writes (trap SYS_READ or SYS_WRITE) a non-blocking file
// descriptor as a raw system call: it never waits, so the scheduler need
// not know of it, which spares the loop's thread the runtime's bookkeeping
// around every call (see loop.run).
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
