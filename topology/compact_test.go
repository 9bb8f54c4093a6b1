package topology

import (
	"os"
	"reflect"
	"testing"
	"unsafe"

	"gopkg.in/yaml.v3"
)

// Parse's compact copies hold exactly what the file says (the topology a
// plain YAML decode makes), with the servers' own strings side by side in
// one block and their Server values in one slice.
//
// SPEC: A1
func TestCompactCopiesKeepTheTopology(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var plain Topology
	if err := yaml.Unmarshal(data, &plain); err != nil {
		t.Fatal(err)
	}
	got, _, err := Parse("valid.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&plain, got) {
		t.Fatalf("compacted topology differs from the file's:\n%#v\n%#v", &plain, got)
	}
	a, b := got.Servers.At(0), got.Servers.At(1)
	if uintptr(unsafe.Pointer(b))-uintptr(unsafe.Pointer(a)) != unsafe.Sizeof(Server{}) {
		t.Error("two servers of one parse are not neighbours in one slice")
	}
	// The first server's strings: name, backends, then addresses.
	end := uintptr(unsafe.Pointer(unsafe.StringData(a.Name))) + uintptr(len(a.Name))
	if uintptr(unsafe.Pointer(unsafe.StringData(a.Backends.Primary))) != end {
		t.Error("a server's name and backend are not side by side in one block")
	}
}
