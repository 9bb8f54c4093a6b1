// Package freeport picks loopback ports for test and benchmark processes
// that bind them later themselves (PostgreSQL, CoreDNS, the appliance).
//
// A port taken by listening on port 0 comes from the kernel's ephemeral
// range, the range outgoing connections draw their local ports from. Between
// the pick and the child's bind, any process on the machine (a test package
// running beside this one) may open a connection from that very port, and the
// child then fails with "Address already in use". Ports below the ephemeral
// range are never handed to outgoing connections, so Pick draws from there.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Pick returns: below it sit well-known services.
const lowest = 10000

// handedOut are the ports Pick has returned in this process, so that two
// parts of one test never share one before either binds it.
var handedOut sync.Map

// Pick returns a port free for TCP and UDP on every given address (default
// 127.0.0.1), below the kernel's ephemeral range, and not returned before in
// this process. Two processes may still draw the same port: a caller that
// starts a server on it retries with a new pick when the bind fails.
func Pick(addrs ...string) (int, error) {
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1"}
	}
	top := ephemeralLow()
	for try := 0; try < 200; try++ {
		port := lowest + rand.IntN(top-lowest)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		if free(port, addrs) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("freeport: no free port below %d on %v", top, addrs)
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowest+1000 {
				return n
			}
		}
	}
	return 32768
}

func free(port int, addrs []string) bool {
	for _, a := range addrs {
		hp := net.JoinHostPort(a, strconv.Itoa(port))
		l, err := net.Listen("tcp", hp)
		if err != nil {
			return false
		}
		l.Close()
		u, err := net.ListenPacket("udp", hp)
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}

// InUse reports whether a server's log says its port was taken: the caller
// then picks another and starts it again.
func InUse(log string) bool {
	return strings.Contains(log, "Address already in use") || strings.Contains(log, "address already in use")
}
