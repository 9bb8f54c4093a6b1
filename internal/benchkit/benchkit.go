// Package benchkit holds the small helpers pgplane's benchmark commands
// and the demo share: appliance processes, free loopback ports, medians.
package benchkit

import (
	"cmp"
	"net"
	"slices"
)

// FreePort returns a TCP port free on ip now. It panics when ip cannot be
// bound at all: a benchmark cannot run without its addresses.
func FreePort(ip string) int {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
