// Package relay copies the bytes of proxied sessions between their two
// connections from a few epoll loops, one thread each, instead of two
// goroutines per session. A session that waits for its next message holds
// no goroutine and no buffer, and a message costs one read and one write:
// a loop reads a socket only after epoll said it is readable, where Go's
// poller tries the read first and parks when it finds nothing.
//
// The connections are Sockets: ordinary net.Conns while the session
// negotiates (TLS, authentication), moved into a loop with Relay once it
// only copies. TLS keeps working over them.
package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Leg is one side of a relayed pair.
type Leg struct {
	// Socket is the connection under any layers.
	Socket *Socket
	// Reader reads the leg: the Socket, or a tls.Conn or bufio.Reader over
	// it, whose buffered bytes are relayed first.
	Reader io.Reader
	// Writer writes to the leg: the Socket, or a tls.Conn over it.
	Writer io.Writer
	// Scan, when set, sees each chunk read from this leg before the other
	// leg gets it; it returns the length to pass on, and stop to end this
	// direction after it.
	Scan func(b []byte) (n int, stop bool)
}

// Pair is a session to relay: bytes read from each leg are written to the
// other.
type Pair struct {
	Legs [2]Leg
	// End is called, on the loop's thread, when the direction from leg
	// from has ended (its reader reached EOF, or Scan stopped it): true
	// ends the relay now; false shuts down the other leg's write side and
	// relays the other direction until it ends too. Nil means false.
	End func(from int, stopped bool) bool
	// Done is called once, on a goroutine of its own, when the relay has
	// ended. The Sockets are then out of the loop and open: Done closes
	// them, or Reattaches one to use it again.
	Done func(Result)
}

// Result is how a relay ended.
type Result struct {
	// Err is the error that ended it, nil when both directions ended or
	// End ended it; net.ErrClosed when a Socket was closed meanwhile.
	Err error
	// Bytes are the bytes read from each leg and written to the other.
	Bytes [2]int64
}

// DefaultLoops is one loop per two CPUs (GOMAXPROCS), at least one: a
// loop with more sessions wakes for larger batches of events, and the
// other CPUs run the handshakes, and PostgreSQL or the clients beside it.
// Measured with bench-gateway on 2 CPUs: one loop spent about 10% less CPU
// per transaction than two.
func DefaultLoops() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Loops are the relay's loops.
type Loops struct {
	loops   []*loop
	next    atomic.Uint32
	procs   int // Ps added to GOMAXPROCS for the loops
	stopped atomic.Bool
}

// pick returns the loop a new pair or waiter goes to, in turn.
func (ls *Loops) pick() *loop {
	return ls.loops[(ls.next.Add(1)-1)%uint32(len(ls.loops))]
}

// Start starts n loops, each a goroutine; n <= 0 means DefaultLoops. A
// busy loop keeps a P while it waits for events (see run), so Start adds
// one P per loop to GOMAXPROCS, and Stop takes them back: the rest of the
// process keeps the Ps it had. (Setting GOMAXPROCS ends the runtime's own
// updates of it when a container's CPU limit changes at run time.)
func Start(n int) (*Loops, error) {
	if n <= 0 {
		n = DefaultLoops()
	}
	ls := &Loops{}
	for i := 0; i < n; i++ {
		l, err := newLoop()
		if err != nil {
			for _, l := range ls.loops {
				unix.Close(l.epfd)
				unix.Close(l.wakefd)
			}
			return nil, err
		}
		ls.loops = append(ls.loops, l)
	}
	ls.procs = n
	addProcs(n)
	for _, l := range ls.loops {
		go l.run()
	}
	return ls, nil
}

// Stop ends every relay (their Done run with net.ErrClosed) and the loops.
func (ls *Loops) Stop() {
	if ls.stopped.Swap(true) {
		return
	}
	for _, l := range ls.loops {
		l.stop()
	}
	addProcs(-ls.procs)
}

// procs serialises changes to GOMAXPROCS by Start and Stop: the setting is
// the process's, and the Loops of several gateways in one process (tests)
// may start and stop at once.
var procs sync.Mutex

// addProcs adds n Ps (n < 0 takes them away) to GOMAXPROCS.
func addProcs(n int) {
	if n == 0 {
		return
	}
	procs.Lock()
	defer procs.Unlock()
	runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)+n))
}

// Relay moves the pair's Sockets out of Go's poller into a loop and relays
// the pair until Done. It returns an error, and moves nothing, when a leg's
// Socket cannot be relayed (Relayable); once it moved anything, Done is
// called, with the error of a move that failed.
func (ls *Loops) Relay(p Pair) error {
	for _, lg := range p.Legs {
		if lg.Socket == nil || !lg.Socket.Relayable() {
			return errors.New("relay: a leg has no socket with a file descriptor")
		}
	}
	l := ls.pick()
	pr := &pair{Pair: p, loop: l, n: 2}
	for i := range pr.legs {
		pr.legs[i] = leg{Leg: p.Legs[i], pair: pr, index: i}
	}
	pr.legs[0].peer, pr.legs[1].peer = &pr.legs[1], &pr.legs[0]
	failed := func(err error) error {
		pr.legs[0].Socket.detach()
		pr.legs[1].Socket.detach()
		go p.Done(Result{Err: err})
		return nil
	}
	if err := pr.legs[0].Socket.take(&pr.legs[0]); err != nil {
		return err
	}
	if err := pr.legs[1].Socket.take(&pr.legs[1]); err != nil {
		return failed(err)
	}
	if !l.add(pr) {
		return failed(net.ErrClosed)
	}
	return nil
}

// Await moves a socket out of Go's poller into a loop until it is
// readable, or closed, and then out of the loop again: a connection whose
// peer is slow to send its next message waits without a goroutine. done is
// called once, on a goroutine of its own, with nil when the socket became
// readable and net.ErrClosed when it was closed meanwhile; the caller then
// Reattaches or closes it. An error means nothing moved and done is not
// called.
func (ls *Loops) Await(s *Socket, done func(error)) error {
	if !s.Relayable() {
		return errors.New("relay: socket without a file descriptor")
	}
	l := ls.pick()
	pr := &pair{Pair: Pair{Done: func(r Result) { done(r.Err) }}, loop: l, n: 1}
	pr.legs[0] = leg{Leg: Leg{Socket: s}, pair: pr}
	if err := s.take(&pr.legs[0]); err != nil {
		return err
	}
	if !l.add(pr) {
		s.detach()
		go done(net.ErrClosed)
	}
	return nil
}

// pair is a Pair in a loop, or a socket waiting to be readable (n == 1).
type pair struct {
	Pair
	loop     *loop
	legs     [2]leg
	n        int // legs in use
	finished bool
	result   Result
}

// leg is a Leg in a loop.
type leg struct {
	Leg
	pair     *pair
	peer     *leg
	index    int
	readDone bool
	events   uint32 // what epoll watches
	fd       int32
}

// loop is one epoll loop.
type loop struct {
	epfd, wakefd int
	buf          []byte // one read buffer for every session of the loop

	mu      sync.Mutex // guards the requests, and wakefd's life
	adds    []*pair
	aborts  []*pair
	stopped bool
	closed  bool // epfd and wakefd are closed

	legs []*leg // by file descriptor; loop thread only
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	// 16 KiB: a TLS record's plaintext, so one read takes a whole record.
	return &loop{epfd: epfd, wakefd: wakefd, buf: make([]byte, 16<<10)}, nil
}

// add hands a pair to the loop; false when the loop has stopped.
func (l *loop) add(p *pair) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.adds = append(l.adds, p)
	l.wakeLocked()
	l.mu.Unlock()
	return true
}

// abort ends a pair from another goroutine.
func (l *loop) abort(p *pair) {
	l.mu.Lock()
	l.aborts = append(l.aborts, p)
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *loop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.wakeLocked()
	l.mu.Unlock()
}

// wakeLocked wakes the loop's thread, unless the loop has ended: its
// eventfd's number may belong to another file by then.
func (l *loop) wakeLocked() {
	if l.closed {
		return
	}
	var one = [8]byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(l.wakefd, one[:])
}

// busyWait is how long a busy loop waits for its next event while it
// holds its P; a loop that got none in that time lets go of it.
const busyWait = time.Millisecond

// run is the loop. A busy loop waits for its next events in epoll_wait
// without telling Go's scheduler (a raw system call): its goroutine keeps
// its P and its thread sleeps in the kernel until a socket is ready, which
// wakes the thread directly. The scheduler's way (the P handed off while
// the thread waits, taken back after it) costs more than a transaction's
// copy; so does parking the goroutine in Go's poller, where the runtime's
// own epoll_wait and a wake-up of the goroutine come before every batch.
// Measured with bench-gateway: 15% less CPU per transaction than Go's
// poller, 2.3 fewer system calls. Each loop holding a P is why Start adds
// a P per loop (GOMAXPROCS).
//
// A loop that had no event for busyWait waits in an ordinary system call
// instead, so an idle gateway holds no P and wakes for nothing. A raw wait
// ends early when the runtime signals the thread (preemption, garbage
// collection): the goroutine then yields where the runtime asked.
func (l *loop) run() {
	events := make([]unix.EpollEvent, 256)
	busy := false
	for {
		var n int
		var err error
		if busy {
			n, err = rawEpollWait(l.epfd, events, int(busyWait/time.Millisecond))
			busy = n > 0 || err != nil
		} else {
			n, err = unix.EpollWait(l.epfd, events, -1)
			busy = true
		}
		if err == unix.EINTR {
			// A signal: the runtime may want this P (a collection's stop,
			// a preemption), and the raw call checked for nothing.
			runtime.Gosched()
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("relay: epoll_wait: %v", err))
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(l.wakefd) {
				if !l.takeRequests() {
					return
				}
				continue
			}
			if lg := l.leg(ev.Fd); lg != nil {
				l.handle(lg, ev.Events)
			}
		}
	}
}

// rawEpollWait is epoll_wait as a raw system call: the scheduler does not
// know the thread waits, and the goroutine keeps its P meanwhile.
func rawEpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// takeRequests adds and aborts the pairs other goroutines asked for; false
// when the loop stops (every pair is then ended).
func (l *loop) takeRequests() bool {
	var b [8]byte
	unix.Read(l.wakefd, b[:])
	l.mu.Lock()
	adds, aborts, stopped := l.adds, l.aborts, l.stopped
	l.adds, l.aborts = nil, nil
	l.mu.Unlock()
	for _, p := range adds {
		l.start(p)
	}
	for _, p := range aborts {
		l.finish(p, net.ErrClosed)
	}
	if stopped {
		for _, lg := range l.legs {
			if lg != nil {
				l.finish(lg.pair, net.ErrClosed)
			}
		}
		l.mu.Lock()
		l.closed = true
		unix.Close(l.epfd)
		unix.Close(l.wakefd)
		l.mu.Unlock()
		return false
	}
	return true
}

// start registers a pair's sockets and relays what their layers already
// hold (epoll reports what the kernel holds).
func (l *loop) start(p *pair) {
	if p.finished {
		return // aborted before the loop took it
	}
	for i := range p.n {
		lg := &p.legs[i]
		lg.fd = int32(lg.Socket.fd)
		lg.events = unix.EPOLLIN
		ev := unix.EpollEvent{Events: lg.events, Fd: lg.fd}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(lg.fd), &ev); err != nil {
			lg.events = 0
			l.finish(p, fmt.Errorf("relay: epoll: %w", err))
			return
		}
		if int(lg.fd) >= len(l.legs) {
			l.legs = append(l.legs, make([]*leg, int(lg.fd)+1-len(l.legs))...)
		}
		l.legs[lg.fd] = lg
	}
	if p.n == 2 {
		l.pump(&p.legs[0])
		l.pump(&p.legs[1])
	}
}

// leg returns the leg of a file descriptor in the loop, or nil.
func (l *loop) leg(fd int32) *leg {
	if fd < 0 || int(fd) >= len(l.legs) {
		return nil
	}
	return l.legs[fd]
}

// handle acts on one epoll event of a leg.
func (l *loop) handle(lg *leg, events uint32) {
	p := lg.pair
	if p.n == 1 {
		l.finish(p, nil) // readable, or closed: the waiter's read will tell
		return
	}
	if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && lg.readDone && len(lg.Socket.pending) == 0 {
		// Nothing left to read from it, nothing to send: the peer is gone
		// while the other direction still writes to it.
		l.finish(p, io.ErrClosedPipe)
		return
	}
	if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && (len(lg.Socket.pending) > 0 || lg.Socket.shutAfter) {
		more, err := lg.Socket.flush()
		if err != nil {
			l.finish(p, err)
			return
		}
		if !more {
			// The direction into this leg may go on.
			l.pump(lg.peer)
			if p.finished {
				return
			}
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		lg.Socket.readable = true
		l.pump(lg)
	}
	if !p.finished {
		l.watch(lg)
		l.watch(lg.peer)
	}
}

// pump relays from src to its peer until src has nothing more to give, or
// the peer's socket takes nothing more.
func (l *loop) pump(src *leg) {
	p, dst := src.pair, src.peer
	for !p.finished && !src.readDone && len(dst.Socket.pending) == 0 {
		n, err := src.Reader.Read(l.buf)
		if n > 0 {
			b, stop := l.buf[:n], false
			if src.Scan != nil {
				n, stop = src.Scan(b)
				b = b[:n]
			}
			if len(b) > 0 {
				if _, werr := dst.Writer.Write(b); werr != nil {
					l.finish(p, werr)
					return
				}
				p.result.Bytes[src.index] += int64(len(b))
			}
			if stop {
				l.ended(src, true)
				return
			}
		}
		if err != nil {
			switch {
			case err == ErrWouldBlock || errors.Is(err, ErrWouldBlock):
			case errors.Is(err, io.EOF):
				l.ended(src, false)
			default:
				l.finish(p, err)
			}
			break
		}
	}
	if !p.finished {
		l.watch(src)
		l.watch(dst)
	}
}

// ended handles the end of the direction from src.
func (l *loop) ended(src *leg, stopped bool) {
	p, dst := src.pair, src.peer
	src.readDone = true
	if p.End != nil && p.End(src.index, stopped) {
		l.finish(p, nil)
		return
	}
	if cw, ok := dst.Writer.(interface{ CloseWrite() error }); ok && dst.Writer != io.Writer(dst.Socket) {
		cw.CloseWrite() // TLS close_notify
	}
	if err := dst.Socket.CloseWrite(); err != nil {
		l.finish(p, err)
		return
	}
	if dst.readDone {
		l.finish(p, nil)
	}
}

// watch tells epoll what the leg waits for: reading while its peer takes
// what it reads, writing while it has bytes pending.
func (l *loop) watch(lg *leg) {
	var want uint32
	if !lg.readDone && len(lg.peer.Socket.pending) == 0 {
		want |= unix.EPOLLIN
	}
	if len(lg.Socket.pending) > 0 || (lg.Socket.shutAfter && !lg.Socket.writeShut) {
		want |= unix.EPOLLOUT
	}
	if want == lg.events {
		return
	}
	lg.events = want
	ev := unix.EpollEvent{Events: want, Fd: lg.fd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(lg.fd), &ev); err != nil {
		l.finish(lg.pair, fmt.Errorf("relay: epoll: %w", err))
	}
}

// finish ends a pair: its sockets leave the loop, and Done runs.
func (l *loop) finish(p *pair, err error) {
	if p.finished {
		return
	}
	p.finished = true
	p.result.Err = err
	for i := range p.n {
		lg := &p.legs[i]
		if l.leg(lg.fd) == lg {
			l.legs[lg.fd] = nil
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(lg.fd), nil)
		}
		lg.Socket.detach()
	}
	go p.Done(p.result)
}
