// Package throttle slows repeated authentication failures from one address,
// and that address only: the first few failures are answered at once, later
// ones after a delay that doubles up to a cap. An address that has not
// failed for a while starts afresh. The gateway (G7) and the admin API
// (A1) share it.
package throttle

import (
	"sync"
	"time"
)

// Failures is a table of recent authentication failures by address. Its
// zero value is not usable; make one with New.
type Failures struct {
	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

// The policy.
const (
	Free    = 3 // failures answered without delay
	base    = 250 * time.Millisecond
	Max     = 4 * time.Second
	forget  = time.Minute // quiet time after which an address starts afresh
	entries = 50000       // bound of the table
)

// New returns an empty table.
func New() *Failures { return &Failures{m: map[string]*failures{}} }

// Failed records a failure from addr and returns how long to wait before
// answering it (0 for the first few), and the number of failures in a row.
func (t *Failures) Failed(addr string) (time.Duration, int) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[addr]
	if f == nil || now.Sub(f.last) > forget {
		if len(t.m) >= entries {
			for a, old := range t.m {
				if now.Sub(old.last) > forget {
					delete(t.m, a)
				}
			}
			if len(t.m) >= entries {
				return Max, 0 // under a flood of addresses, slow every failure
			}
		}
		f = &failures{}
		t.m[addr] = f
	}
	f.n++
	f.last = now
	return delay(f.n), f.n
}

// delay is how long the n-th failure in a row waits.
func delay(n int) time.Duration {
	if n <= Free {
		return 0
	}
	return min(base<<min(n-Free-1, 8), Max)
}

// Waiting returns how long addr must still wait before its next attempt
// is heard, by the delay its last failure earned; 0 when it need not.
func (t *Failures) Waiting(addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[addr]
	if f == nil {
		return 0
	}
	return max(time.Until(f.last.Add(delay(f.n))), 0)
}

// Succeeded clears addr's failures.
func (t *Failures) Succeeded(addr string) {
	t.mu.Lock()
	delete(t.m, addr)
	t.mu.Unlock()
}
