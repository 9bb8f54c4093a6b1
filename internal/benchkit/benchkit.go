// Package benchkit holds the small helpers pgplane's benchmark commands
// and the demo share: appliance processes, free loopback ports, medians.
package benchkit

import (
	"cmp"
	"net"
	"slices"
	"strconv"

	"github.com/pgplane/pgplane/internal/freeport"
)

// FreePort returns a port free on ip for TCP and UDP now, below the
// kernel's ephemeral range (freeport.Pick): CoreDNS binds both with
// SO_REUSEPORT, so a port held by another process on either would be shared
// silently. It panics when none is found: a benchmark cannot run without
// its addresses.
func FreePort(ip string) int {
	port, err := freeport.Pick(ip)
	if err != nil {
		panic(err)
	}
	return port
}

// FreePortExcept is FreePort, never one of taken: ports picked one after
// the other are not held in between, and the kernel may hand one out twice.
func FreePortExcept(ip string, taken ...int) int {
	for {
		if p := FreePort(ip); !slices.Contains(taken, p) {
			return p
		}
	}
}

// ClusterPorts picks each node's gossip and Raft addresses on its IP, each
// port distinct from taken and from the others picked on that IP.
func ClusterPorts(ips []string, taken ...int) (gossip, raft []string) {
	for _, ip := range ips {
		g := FreePortExcept(ip, taken...)
		r := FreePortExcept(ip, append(taken, g)...)
		gossip = append(gossip, net.JoinHostPort(ip, strconv.Itoa(g)))
		raft = append(raft, net.JoinHostPort(ip, strconv.Itoa(r)))
	}
	return gossip, raft
}

// Median returns the middle value (the upper one of an even count), or the
// zero value of an empty list.
func Median[T cmp.Ordered](values []T) T {
	var zero T
	if len(values) == 0 {
		return zero
	}
	s := slices.Clone(values)
	slices.Sort(s)
	return s[len(s)/2]
}
