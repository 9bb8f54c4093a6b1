package topology

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary text to the topology loader: it must return a
// topology or an error, never panic, and what it accepts must make a snapshot.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("regions: [{name: a, gateways: [1.2.3.4, 1.2.3.5]}]"))
	f.Add([]byte("vnets:\n  - &a {name: x}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		topo, _, err := Parse("fuzz.yaml", text)
		if err != nil {
			return
		}
		if _, err := NewSnapshot(topo, State{}, 1); err != nil {
			t.Fatalf("a valid topology must make a snapshot: %v", err)
		}
	})
}

// FuzzParserMatchesParse checks that the incremental Parser gives exactly
// Parse's result, for a first parse and for a re-parse after an edit that
// reuses cached parts.
func FuzzParserMatchesParse(f *testing.F) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, data)
	f.Add(data, []byte(strings.Replace(string(data), "10.0.1.0/28", "10.0.1.0/29", 1)))
	f.Add(data, []byte(strings.Replace(string(data), "  - name: hub-vnet", "  - name: hub-vnet\n    colour: blue", 1)))
	f.Add([]byte("regions:\n- name: a\n  gateways: [1.2.3.4, 1.2.3.5]\n"), []byte("regions:\n- {name: a, gateways: [1.2.3.4, 1.2.3.6]}\n"))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		var p Parser
		for _, text := range [][]byte{first, second, first} {
			wantT, wantW, wantErr := Parse("f.yaml", text)
			gotT, gotW, gotErr := p.Parse("f.yaml", text)
			if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
				t.Fatalf("errors differ:\nParse:  %v\nParser: %v\ninput:\n%s", wantErr, gotErr, text)
			}
			if !reflect.DeepEqual(wantT, gotT) {
				t.Fatalf("topologies differ:\nParse:  %#v\nParser: %#v\ninput:\n%s", wantT, gotT, text)
			}
			if fmt.Sprint(wantW) != fmt.Sprint(gotW) {
				t.Fatalf("warnings differ:\n%v\n%v", wantW, gotW)
			}
		}
	})
}
