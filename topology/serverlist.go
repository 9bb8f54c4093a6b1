package topology

import (
	"encoding/json"
	"iter"
	"slices"
	"sort"

	"gopkg.in/yaml.v3"
)

// ServerList is a topology's servers in their order, immutable. It is held
// in chunks, so that a change of one server (Set, Insert, Delete) copies the
// chunk it touches and the table of chunks, and shares every other chunk
// with the list before: at 100,000 servers a change copies a few hundred
// pointers, not 100,000. The zero value is an empty list. In YAML and JSON
// it is a plain sequence of servers.
type ServerList struct {
	chunks [][]*Server // none empty
	ends   []int       // ends[i] is the number of servers in chunks[:i+1]
	size   int         // the longest a chunk grows before it is split; 0: defaultChunk
}

// defaultChunk is a chunk's length when a list is built, and half the
// longest it grows to before it is split in two.
const defaultChunk = 256

// NewServerList returns a list of the servers, in that order.
func NewServerList(servers ...*Server) ServerList { return newServerList(servers, 0) }

// newServerList builds a list whose chunks hold size servers (0:
// defaultChunk); tests make them small to exercise the splits.
func newServerList(servers []*Server, size int) ServerList {
	l := ServerList{size: size}
	n := l.chunkLen()
	for from := 0; from < len(servers); from += n {
		chunk := slices.Clone(servers[from:min(from+n, len(servers))])
		l.chunks = append(l.chunks, chunk)
		l.ends = append(l.ends, from+len(chunk))
	}
	return l
}

func (l ServerList) chunkLen() int {
	if l.size > 0 {
		return l.size
	}
	return defaultChunk
}

// Len returns the number of servers.
func (l ServerList) Len() int {
	if len(l.ends) == 0 {
		return 0
	}
	return l.ends[len(l.ends)-1]
}

// Same reports whether l and m are the same list: the same chunks, shared.
// (Lists never change in place, so a shared chunk holds the same servers.)
func (l ServerList) Same(m ServerList) bool {
	if len(l.chunks) != len(m.chunks) {
		return false
	}
	for i, c := range l.chunks {
		if len(c) != len(m.chunks[i]) || &c[0] != &m.chunks[i][0] {
			return false
		}
	}
	return true
}

// IsZero reports whether the list is empty (for omitempty and omitzero).
func (l ServerList) IsZero() bool { return l.Len() == 0 }

// locate returns the chunk holding position i and i's offset in it.
func (l ServerList) locate(i int) (chunk, offset int) {
	c := sort.SearchInts(l.ends, i+1)
	if c > 0 {
		offset = i - l.ends[c-1]
	} else {
		offset = i
	}
	return c, offset
}

// At returns the server at position i; it panics when i is out of range,
// as a slice index does.
func (l ServerList) At(i int) *Server {
	if i < 0 || i >= l.Len() {
		panic("topology: ServerList index out of range")
	}
	c, o := l.locate(i)
	return l.chunks[c][o]
}

// All yields each position and server in order.
func (l ServerList) All() iter.Seq2[int, *Server] {
	return func(yield func(int, *Server) bool) {
		i := 0
		for _, chunk := range l.chunks {
			for _, s := range chunk {
				if !yield(i, s) {
					return
				}
				i++
			}
		}
	}
}

// Slice returns the servers in a new slice.
func (l ServerList) Slice() []*Server {
	out := make([]*Server, 0, l.Len())
	for _, chunk := range l.chunks {
		out = append(out, chunk...)
	}
	return out
}

// Index returns the position of the server p (the same pointer), or -1: a
// scan of pointers, chunk by chunk, without a call per server.
func (l ServerList) Index(p *Server) int {
	from := 0
	for _, chunk := range l.chunks {
		if i := slices.Index(chunk, p); i >= 0 {
			return from + i
		}
		from += len(chunk)
	}
	return -1
}

// Chunks yields the list's servers in runs, in order: a scan of every
// server without a call per server (All's cost).
func (l ServerList) Chunks() iter.Seq2[int, []*Server] {
	return func(yield func(int, []*Server) bool) {
		from := 0
		for _, chunk := range l.chunks {
			if !yield(from, chunk) {
				return
			}
			from += len(chunk)
		}
	}
}

// IndexFunc returns the first position whose server satisfies f, or -1.
func (l ServerList) IndexFunc(f func(*Server) bool) int {
	for i, s := range l.All() {
		if f(s) {
			return i
		}
	}
	return -1
}

// Search returns the first position in [from, Len()) whose server satisfies
// f, which must be false then true along the list (sort.Search).
func (l ServerList) Search(from int, f func(*Server) bool) int {
	return from + sort.Search(l.Len()-from, func(i int) bool { return f(l.At(from + i)) })
}

// Set returns the list with the server at position i replaced by s.
func (l ServerList) Set(i int, s *Server) ServerList {
	c, o := l.locate(i)
	chunk := slices.Clone(l.chunks[c])
	chunk[o] = s
	next := l
	next.chunks = slices.Clone(l.chunks)
	next.chunks[c] = chunk
	return next
}

// Insert returns the list with s inserted at position i (0 ≤ i ≤ Len()).
func (l ServerList) Insert(i int, s *Server) ServerList {
	if len(l.chunks) == 0 {
		return ServerList{chunks: [][]*Server{{s}}, ends: []int{1}, size: l.size}
	}
	c, o := l.locate(i)
	if c == len(l.chunks) { // at the end: the last chunk grows
		c, o = c-1, len(l.chunks[c-1])
	}
	chunk := slices.Insert(slices.Clone(l.chunks[c]), o, s)
	next := ServerList{size: l.size}
	if len(chunk) > 2*l.chunkLen() {
		half := len(chunk) / 2
		next.chunks = slices.Concat(l.chunks[:c], [][]*Server{chunk[:half:half], chunk[half:]}, l.chunks[c+1:])
	} else {
		next.chunks = slices.Clone(l.chunks)
		next.chunks[c] = chunk
	}
	next.reckon()
	return next
}

// Delete returns the list without the server at position i.
func (l ServerList) Delete(i int) ServerList {
	c, o := l.locate(i)
	next := ServerList{size: l.size}
	if len(l.chunks[c]) == 1 {
		next.chunks = slices.Concat(l.chunks[:c], l.chunks[c+1:])
	} else {
		next.chunks = slices.Clone(l.chunks)
		next.chunks[c] = slices.Delete(slices.Clone(l.chunks[c]), o, o+1)
	}
	next.reckon()
	return next
}

// reckon sets ends from the chunks.
func (l *ServerList) reckon() {
	l.ends = make([]int, len(l.chunks))
	n := 0
	for i, chunk := range l.chunks {
		n += len(chunk)
		l.ends[i] = n
	}
}

// MarshalJSON writes the list as a JSON array.
func (l ServerList) MarshalJSON() ([]byte, error) { return json.Marshal(l.Slice()) }

// UnmarshalJSON reads a JSON array of servers; null items are left out.
func (l *ServerList) UnmarshalJSON(b []byte) error {
	var servers []*Server
	if err := json.Unmarshal(b, &servers); err != nil {
		return err
	}
	*l = NewServerList(withoutNil(servers)...)
	return nil
}

// MarshalYAML writes the list as a YAML sequence.
func (l ServerList) MarshalYAML() (any, error) { return l.Slice(), nil }

// UnmarshalYAML reads a YAML sequence of servers. A null item (a bare "-")
// is left out, as the incremental Parser leaves it out: decoded as it is,
// it was a nil server that validation dereferenced (FuzzParse found it).
func (l *ServerList) UnmarshalYAML(value *yaml.Node) error {
	var servers []*Server
	if err := value.Decode(&servers); err != nil {
		return err
	}
	*l = NewServerList(withoutNil(servers)...)
	return nil
}

func withoutNil(servers []*Server) []*Server {
	return slices.DeleteFunc(servers, func(s *Server) bool { return s == nil })
}
