package throttle

import (
	"testing"
	"time"
)

// SPEC: G7 A1
func TestRepeatedFailuresSlowThatAddressOnly(t *testing.T) {
	th := New()
	var delays []time.Duration
	for i := 0; i < 7; i++ {
		d, n := th.Failed("127.0.0.7")
		if n != i+1 {
			t.Fatalf("failure %d counted as %d", i+1, n)
		}
		delays = append(delays, d)
	}
	want := []time.Duration{0, 0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("failure %d: delay %v, want %v (all: %v)", i+1, delays[i], want[i], delays)
		}
	}
	if w := th.Waiting("127.0.0.7"); w <= time.Second || w > 2*time.Second {
		t.Fatalf("after a 2 s delay the address waits about 2 s, got %v", w)
	}
	if d, _ := th.Failed("127.0.0.8"); d != 0 || th.Waiting("127.0.0.8") != 0 {
		t.Fatalf("another address must not be slowed: %v", d)
	}
	th.Succeeded("127.0.0.7")
	if d, _ := th.Failed("127.0.0.7"); d != 0 {
		t.Fatalf("a success clears the address: %v", d)
	}
}
