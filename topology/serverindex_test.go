package topology

import (
	"fmt"
	"testing"
)

// The index finds every server of a list at its position, finds nothing
// for a name the list lacks, and of two servers of one name the last.
//
// SPEC: A1
func TestServerIndexFindsEveryServer(t *testing.T) {
	if srv, pos := (ServerIndex{}).Find("a"); srv != nil || pos != -1 {
		t.Fatalf("the zero index found %v at %d", srv, pos)
	}
	for _, n := range []int{1, 2, 3, 255, 256, 257, 1000} {
		servers := make([]*Server, n)
		for i := range servers {
			servers[i] = &Server{Name: fmt.Sprintf("srv-%d", i)}
		}
		list := newServerList(servers, 7)
		x := NewServerIndex(list)
		for i, s := range servers {
			if got, pos := x.Find(s.Name); got != s || pos != i {
				t.Fatalf("%d servers: %s found at %d (%p), want %d (%p)", n, s.Name, pos, got, i, s)
			}
		}
		for _, name := range []string{"", "srv", fmt.Sprintf("srv-%d", n), "SRV-0"} {
			if got, pos := x.Find(name); got != nil || pos != -1 {
				t.Fatalf("%d servers: %q found at %d", n, name, pos)
			}
		}
	}
	twice := NewServerList(&Server{Name: "a"}, &Server{Name: "b"}, &Server{Name: "a", Region: "second"})
	if got, pos := NewServerIndex(twice).Find("a"); got.Region != "second" || pos != 2 {
		t.Fatalf("of two servers named a, found the one at %d", pos)
	}
}
