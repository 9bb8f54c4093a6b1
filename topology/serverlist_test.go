package topology

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// The server list answers as a plain slice does under any sequence of
// sets, inserts and deletes, with chunks small enough to split and empty
// often; and a list a change was made from is left as it was.
//
// SPEC: A2 C5
func FuzzServerListMatchesSlice(f *testing.F) {
	f.Add([]byte{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 2, 1, 0, 3, 2, 2, 1})
	f.Add([]byte{0, 5, 1, 3, 2, 0, 2, 0, 2, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		// Each step checks every position, so a script's cost grows with
		// the square of its length: 256 steps cover chunks of every size
		// and keep an input well under go test's 10 s limit for a worker.
		if len(script) > 512 {
			script = script[:512]
		}
		size := 1 + len(script)%3
		var want []*Server
		list := newServerList(nil, size)
		var before []*Server
		var beforeList ServerList
		for i := 0; i+1 < len(script); i += 2 {
			op, at := script[i]%3, int(script[i+1])
			s := &Server{Name: fmt.Sprintf("s%d", i)}
			before, beforeList = slices.Clone(want), list
			switch {
			case op == 0 && len(want) > 0:
				at %= len(want)
				want[at] = s
				list = list.Set(at, s)
			case op == 1:
				at %= len(want) + 1
				want = slices.Insert(want, at, s)
				list = list.Insert(at, s)
			case op == 2 && len(want) > 0:
				at %= len(want)
				want = slices.Delete(want, at, at+1)
				list = list.Delete(at)
			}
			if !slices.Equal(beforeList.Slice(), before) {
				t.Fatalf("step %d changed the list it was made from", i/2)
			}
			if got := list.Slice(); !slices.Equal(got, want) || list.Len() != len(want) {
				t.Fatalf("step %d: list %d servers, slice %d", i/2, list.Len(), len(want))
			}
			for j, s := range want {
				if list.At(j) != s || list.Index(s) != j {
					t.Fatalf("step %d: position %d differs", i/2, j)
				}
			}
			for c, chunk := range list.chunks {
				if len(chunk) == 0 || len(chunk) > 2*size+1 {
					t.Fatalf("step %d: chunk %d holds %d servers (size %d)", i/2, c, len(chunk), size)
				}
			}
		}
	})
}

// A list reads and writes as a plain sequence in YAML and JSON.
//
// SPEC: A2 C5
func TestServerListEncodesAsASequence(t *testing.T) {
	l := newServerList([]*Server{{Name: "a-db"}, {Name: "b-db"}, {Name: "c-db"}}, 1)
	b, err := json.Marshal(Topology{Servers: l})
	if err != nil {
		t.Fatal(err)
	}
	var back Topology
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Servers.Len() != 3 || back.Servers.At(2).Name != "c-db" {
		t.Fatalf("JSON round trip: %s", b)
	}
	if b, _ := json.Marshal(Topology{}); string(b) != "{}" {
		t.Fatalf("an empty list is left out of JSON: %s", b)
	}
	y, err := yaml.Marshal(Topology{Servers: l})
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML Topology
	if err := yaml.Unmarshal(y, &fromYAML); err != nil {
		t.Fatal(err)
	}
	if fromYAML.Servers.Len() != 3 || fromYAML.Servers.At(0).Name != "a-db" {
		t.Fatalf("YAML round trip:\n%s", y)
	}
	if y, _ := yaml.Marshal(Topology{}); string(y) != "{}\n" {
		t.Fatalf("an empty list is left out of YAML: %q", y)
	}
}
