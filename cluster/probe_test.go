package cluster

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A probe that fails because this process was not run on time (here: the
// prober's process stopped with SIGSTOP for a second while it waited for a
// backend's answer) says how late it ended, so that the failure is not
// counted against the target; a probe that fails on time says nothing of
// the kind, and is counted.
//
// SPEC: C2 C3
func TestProbeOfAStoppedProberIsLate(t *testing.T) {
	if addr := os.Getenv("PGPLANE_PROBE_CHILD"); addr != "" {
		up, late := probe(addr, true, 300*time.Millisecond)
		fmt.Printf("up=%v late=%d\n", up, late)
		return
	}
	// A backend that accepts and never answers the SSLRequest.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	run := func(stop bool) (up bool, late time.Duration) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestProbeOfAStoppedProberIsLate$")
		cmd.Env = append(os.Environ(), "PGPLANE_PROBE_CHILD="+ln.Addr().String())
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		select {
		case c := <-accepted:
			defer c.Close()
			// Its SSLRequest read: the prober waits for the answer,
			// its deadline set.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 8)); err != nil {
				t.Fatalf("the prober's SSLRequest: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the prober never connected")
		}
		if stop {
			cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(time.Second)
			cmd.Process.Signal(syscall.SIGCONT)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("prober: %v\n%s", err, out.String())
		}
		var ns int64
		if _, err := fmt.Sscanf(out.String(), "up=%t late=%d", &up, &ns); err != nil {
			t.Fatalf("prober's output %q: %v", out.String(), err)
		}
		return up, time.Duration(ns)
	}
	if up, late := run(false); up || late != 0 {
		t.Fatalf("a probe that failed on time: up %v, late %s; want down and not late", up, late)
	}
	if up, late := run(true); up || late < 500*time.Millisecond {
		t.Fatalf("a probe whose process was stopped a second: up %v, late %s; want down and late", up, late)
	}
}
