package topology

import (
	"encoding/binary"
	"hash/maphash"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"gopkg.in/yaml.v3"
)

// Parser parses topology files like Parse and remembers the decoded parts of
// the last file it read, keyed by a 128-bit hash of their text, so that re-parsing an
// edited file decodes only what changed: an edit of one server in a
// 10,000-server file decodes one item, not 10,000. Its results are always
// those of Parse: whenever a part does not decode cleanly, or the file uses
// YAML that ties parts together (anchors, aliases, several documents, a
// top level that is not a plain block mapping), it falls back to Parse.
// Parse validates the whole topology; Edit leaves validating an edit of
// servers, VNets or zones to its caller. A Parser is safe for concurrent use.
//
// What it remembers costs 24 bytes a part: each part's key and where its
// decoded value stands in the topology it returned last, which holds the
// values themselves (a map of keys to decoded parts beside that topology
// took about 100 bytes a server).
type Parser struct {
	mu     sync.Mutex
	seeds  [2]maphash.Seed
	seeded bool
	// last is the topology of the file read last, nil when that file was
	// parsed whole (Parse); parts are its parts in the file's order.
	last  *Topology
	parts []part
}

// part is a decoded part of the file read last: its key and where its
// value stands in Parser.last.
type part struct {
	key chunkKey
	// at is the item's index in its section's list, or -1 for a null
	// item (yaml.v3 leaves it out of the list; it still counts for line
	// numbers); 0 for a part that is a section's whole value.
	at    int32
	field uint8 // the section's field of Topology
	item  bool
}

// chunkKey identifies a part of a file by the section it stands in and its
// text. The text is kept as two 64-bit hashes with independent random
// seeds, not itself: a large file's text would stay in memory twice over
// (the decoded value holds what matters of it), and a parser reads only
// what its operator wrote, so 128 bits keep collisions out of reach.
// The section (the top-level key) and whether the part is one item of a
// block sequence or the section's whole value are hashed with the text.
type chunkKey [2]uint64

// key returns the key of a span.
func (p *Parser) key(s span) chunkKey {
	if !p.seeded {
		p.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
		p.seeded = true
	}
	var k chunkKey
	for i, seed := range p.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(s.section)
		if s.item {
			h.WriteByte(1)
		} else {
			h.WriteByte(0)
		}
		h.WriteString(s.text)
		k[i] = h.Sum64()
	}
	return k
}

// chunk is a decoded part of a file.
type chunk struct {
	// No YAML node tree is kept (it took two thirds of the memory of a
	// large topology): a violation's line is found by parsing its span's
	// text again.
	value reflect.Value // the decoded item or section value
	// null marks a null sequence item, which yaml.v3 leaves out of the
	// decoded slice (but which still counts for line numbers).
	null bool
}

// span is a part of a file before decoding.
type span struct {
	section string
	item    bool
	keyLine int // the section key's line
	first   int // the line of the span's first line of text
	text    string
}

// section is one top-level key of a parsed file with its parts.
type section struct {
	keyLine int
	item    bool
	spans   []span // where each part stands in this file, and its text: part of Parse's spans
	from    int    // the index of the section's first span in Parse's spans
	values  int    // the parts that are not null items
}

// rememberedParts finds the decoded parts of the file read last by key. A
// file is mostly read again in the same order, so the parts are looked for
// at the place the last one found was followed by (and a few beyond: parts
// removed since); a map of every part is made only once the order has
// failed too often (sections moved, parts swapped). A part not found is
// decoded anew, which costs time, never a wrong value.
type rememberedParts struct {
	p       *Parser
	last    reflect.Value
	servers []*Server
	next    int              // the part expected next
	misses  int              // parts not found at their expected place
	all     map[chunkKey]int // every part by key, once misses ran out
}

// partLookAhead is how many parts past the expected one are looked at;
// partMisses how many parts may go unfound before the map is made.
const partLookAhead, partMisses = 8, 64

func (p *Parser) remembered() *rememberedParts {
	r := &rememberedParts{p: p}
	if p.last != nil {
		r.last, r.servers = reflect.ValueOf(p.last).Elem(), p.last.Servers.Slice()
	}
	return r
}

// find returns the remembered part with that key.
func (r *rememberedParts) find(key chunkKey) (chunk, bool) {
	parts := r.p.parts
	if r.all == nil {
		for i := r.next; i < len(parts) && i <= r.next+partLookAhead; i++ {
			if parts[i].key == key {
				r.next = i + 1
				return r.chunk(parts[i]), true
			}
		}
		if r.misses++; r.misses <= partMisses {
			return chunk{}, false
		}
		r.all = make(map[chunkKey]int, len(parts))
		for i, pt := range parts {
			r.all[pt.key] = i
		}
	}
	i, ok := r.all[key]
	if !ok {
		return chunk{}, false
	}
	return r.chunk(parts[i]), true
}

// chunk is a remembered part's decoded value.
func (r *rememberedParts) chunk(pt part) chunk {
	field := r.last.Field(int(pt.field))
	switch {
	case !pt.item:
		return chunk{value: field}
	case pt.at < 0:
		return chunk{null: true}
	case field.Type() == serverListType:
		return chunk{value: reflect.ValueOf(r.servers[pt.at])}
	default:
		return chunk{value: field.Index(int(pt.at))}
	}
}

// forget drops what the parser remembers: the file is parsed whole.
func (p *Parser) forget() { p.last, p.parts = nil, nil }

// Parse decodes and validates a topology file as the package's Parse does,
// reusing the decoded parts of the previous call whose text is unchanged.
// data must not change while Parse runs; nothing of it is kept after.
func (p *Parser) Parse(name string, data []byte) (*Topology, Violations, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, a, ok := p.decodeLocked(data)
	if !ok {
		return Parse(name, data) // reports the unknown field or the problem as Parse does
	}
	violations, warnings := Validate(t)
	firstKeyLine := 0
	if len(a.order) > 0 {
		firstKeyLine = a.sections[a.order[0]].keyLine
	}
	for _, vs := range []Violations{violations, warnings} {
		for i := range vs {
			vs[i].File = name
			vs[i].Line = sectionLine(a.sections, vs[i].Path, firstKeyLine)
		}
	}
	if len(violations) > 0 {
		return t, warnings, violations
	}
	return t, warnings, nil
}

// FileEdit is what a file changed since the one a Parser read last, by
// section: ServersSame or Servers (those decoded anew), and Network, VNets
// and Zones (the names of those decoded anew; one removed is one the last
// file had that the new one lacks).
type FileEdit struct {
	// ServersSame is true when the servers' parts are the same text in
	// the same order: the same servers.
	ServersSame bool
	Servers     []*Server
	// Network is true when the VNets' or zones' parts are not the same
	// text in the same order.
	Network      bool
	VNets, Zones []string
}

// Edit decodes a file as Parse does, without validating it, when it
// differs from the file read last in its servers, VNets and private DNS
// zones alone (its datacenter ranges and regions the same text): it returns
// the topology and what changed. ok is false when anything else changed,
// or the file must be parsed whole; a Parse of the same data then finds
// every part this call decoded known. The caller validates what changed.
func (p *Parser) Edit(data []byte) (t *Topology, e FileEdit, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		return nil, FileEdit{}, false
	}
	before := p.parts
	t, a, ok := p.decodeLocked(data)
	if !ok {
		return nil, FileEdit{}, false
	}
	same := func(field int) bool { return sameParts(before, a.parts, field) }
	for _, it := range a.fresh.items {
		switch {
		case it.section == "vnets" && it.at >= 0:
			e.VNets = append(e.VNets, t.VNets[it.at].Name)
		case it.section == "privateDnsZones" && it.at >= 0:
			e.Zones = append(e.Zones, t.PrivateDNSZones[it.at].Name)
		default:
			return nil, FileEdit{}, false // a whole section, or another one
		}
	}
	for field := range reflect.TypeOf(Topology{}).NumField() {
		if field != serversField && field != vnetsField && field != zonesField && !same(field) {
			return nil, FileEdit{}, false
		}
	}
	e.ServersSame = same(serversField)
	e.Servers = a.fresh.servers
	e.Network = !same(vnetsField) || !same(zonesField)
	return t, e, true
}

// sameParts reports whether two files' parts of one section (a field of
// Topology) are the same text in the same order.
func sameParts(a, b []part, field int) bool {
	i, j := 0, 0
	for {
		for i < len(a) && int(a[i].field) != field {
			i++
		}
		for j < len(b) && int(b[j].field) != field {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		if a[i].key != b[j].key || a[i].item != b[j].item {
			return false
		}
		i, j = i+1, j+1
	}
}

// The indexes of Topology's fields that an Edit tells apart.
var (
	serversField = topologyField("Servers")
	vnetsField   = topologyField("VNets")
	zonesField   = topologyField("PrivateDNSZones")
)

func topologyField(name string) int {
	f, _ := reflect.TypeOf(Topology{}).FieldByName(name)
	return f.Index[0]
}

// decodeLocked decodes data into a topology, reusing the parts of the file
// read last whose text is unchanged, and remembers it; false (and nothing
// remembered) when the file must be parsed whole.
func (p *Parser) decodeLocked(data []byte) (*Topology, assembly, bool) {
	spans, ok := splitTopology(data, len(p.parts))
	if !ok {
		p.forget()
		return nil, assembly{}, false
	}
	decodedSpans, ok := p.decodeSpans(spans)
	if !ok {
		p.forget()
		return nil, assembly{}, false
	}
	t, a := assemble(spans, decodedSpans)
	settle(t, &a.fresh)
	p.last, p.parts = t, a.parts
	return t, a, true
}

// spanValue is a span's place in Topology and its decoded value.
type spanValue struct {
	field int          // the span's section's field of Topology
	elem  reflect.Type // the type its text decodes to
	key   chunkKey
	c     chunk
	known bool // c is the file read last's, not decoded anew
}

// decodeSpans returns each span's value: the file read last's for a span
// whose text it held, decoded anew (on every P, decodeAll) for the others.
// It reports false when a span is of no known section, or does not decode
// cleanly on its own.
func (p *Parser) decodeSpans(spans []span) ([]spanValue, bool) {
	known := p.remembered()
	fields := yamlFieldIndexes(reflect.TypeOf(Topology{}))
	out := make([]spanValue, len(spans))
	var todo []int
	var (
		idx     int
		elem    reflect.Type
		of      string // the section idx and elem are of
		ofItems bool
	)
	for k, s := range spans {
		if k == 0 || s.section != of || s.item != ofItems {
			var isField bool
			if idx, isField = fields[s.section]; !isField {
				return nil, false
			}
			elem, of, ofItems = reflect.TypeOf(Topology{}).Field(idx).Type, s.section, s.item
			if s.item {
				elem = itemType(elem)
			}
		}
		v := &out[k]
		v.field, v.elem, v.key = idx, elem, p.key(s)
		if v.c, v.known = known.find(v.key); !v.known {
			todo = append(todo, k)
		}
	}
	ok := decodeAll(spans, todo, func(k int) reflect.Type { return out[k].elem }, func(k int, c chunk) { out[k].c = c })
	return out, ok
}

// assembly is what assemble learned on the way: the sections in the
// file's order, each part's place for the next parse, and what was
// decoded anew.
type assembly struct {
	sections map[string]*section
	order    []string
	parts    []part
	fresh    decoded
}

// assemble builds the topology of the spans from their values.
func assemble(spans []span, values []spanValue) (*Topology, assembly) {
	t := &Topology{}
	tv := reflect.ValueOf(t).Elem()
	a := assembly{sections: map[string]*section{}, parts: make([]part, 0, len(spans))}
	for k, s := range spans {
		v := values[k]
		sec := a.sections[s.section]
		if sec == nil {
			sec = &section{keyLine: s.keyLine, item: s.item, from: k}
			a.sections[s.section] = sec
			a.order = append(a.order, s.section)
		}
		pt := part{key: v.key, field: uint8(v.field), item: s.item, at: -1}
		if s.item && !v.c.null {
			pt.at = int32(sec.values)
			sec.values++
		}
		if !v.known {
			a.fresh.note(s.section, pt, v.c)
		}
		a.parts = append(a.parts, pt)
		sec.spans = spans[sec.from : k+1] // a section's spans are contiguous
	}
	for _, key := range a.order {
		sec := a.sections[key]
		field := tv.Field(values[sec.from].field)
		if !sec.item {
			field.Set(values[sec.from].c.value)
			continue
		}
		// The section's items, made at their length (appended one by one
		// through reflect they took 39 ms a parse at 100,000 servers).
		sliceType := field.Type()
		if sliceType == serverListType {
			sliceType = reflect.SliceOf(serverType)
		}
		slice := reflect.MakeSlice(sliceType, sec.values, sec.values)
		j := 0
		for k, v := range values[sec.from : sec.from+len(sec.spans)] {
			if !v.c.null && spans[sec.from+k].section == key {
				slice.Index(j).Set(v.c.value)
				j++
			}
		}
		if field.Type() == serverListType {
			field.Set(reflect.ValueOf(NewServerList(slice.Interface().([]*Server)...)))
			continue
		}
		field.Set(slice)
	}
	return t, a
}

// sectionLine finds the line of a path as lineOf does on the whole document.
func sectionLine(sections map[string]*section, path string, docLine int) int {
	parts := strings.Split(path, ".")
	sec := sections[parts[0]]
	if path == "" || sec == nil {
		return docLine
	}
	if !sec.item {
		return lineIn(spanNode(sec.spans[0]), parts[1:], sec.keyLine, sec.keyLine-1)
	}
	if len(parts) == 1 {
		return sec.keyLine
	}
	i, err := strconv.Atoi(parts[1])
	if err != nil || i < 0 || i >= len(sec.spans) {
		return sec.keyLine
	}
	offset := sec.spans[i].first - 1
	node := spanNode(sec.spans[i])
	return lineIn(node, parts[2:], node.Line+offset, offset)
}

// spanNode parses a span's text to the node of its item, or of its
// section's value; nil when the span does not parse on its own as one.
func spanNode(s span) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s.text), &doc); err != nil || len(doc.Content) != 1 {
		return nil
	}
	root := doc.Content[0]
	switch {
	case s.item && root.Kind == yaml.SequenceNode && len(root.Content) == 1:
		return root.Content[0]
	case !s.item && root.Kind == yaml.MappingNode && len(root.Content) == 2 && root.Content[0].Value == s.section:
		return root.Content[1]
	}
	return nil
}

// decodeAll decodes the spans at the indexes todo (elem gives each one's
// type, set receives each result), on as many goroutines as the runtime has
// Ps: YAML decoding is most of a large file's start, and the parts stand
// alone. It reports false when a span does not decode cleanly on its own.
func decodeAll(spans []span, todo []int, elem func(int) reflect.Type, set func(int, chunk)) bool {
	const block = 256 // spans a goroutine takes at a time
	workers := min(runtime.GOMAXPROCS(0), (len(todo)+block-1)/block)
	var (
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var nodes plainNodes
			known := schema{}
			for !failed.Load() {
				from := int(next.Add(block)) - block
				if from >= len(todo) {
					return
				}
				if !decodeBlock(spans, todo[from:min(from+block, len(todo))], elem, set, &nodes, known) {
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// decodeBlock decodes the spans at the indexes block, with a goroutine's
// plainNodes and schema. An item in the plainest YAML is read by
// plainItem; the other items of a section are parsed by yaml.v3 as one
// sequence (decodeItems), since yaml.v3's set-up of a parse costs as much
// as a small item's own parse, and one by one if that fails. It reports
// false when a span does not decode cleanly on its own.
func decodeBlock(spans []span, block []int, elem func(int) reflect.Type, set func(int, chunk), nodes *plainNodes, known schema) bool {
	var parse []int // items left to yaml.v3, of one section
	parsed := func() bool {
		run := parse
		parse = parse[:0]
		if len(run) > 1 {
			if chunks := decodeItems(spans, run, elem(run[0]), known); chunks != nil {
				for i, k := range run {
					set(k, chunks[i])
				}
				return true
			}
		}
		for _, k := range run {
			c := decodeChunk(spans[k], elem(k), known)
			if c == nil {
				return false
			}
			set(k, *c)
		}
		return true
	}
	for _, k := range block {
		s := spans[k]
		if s.item {
			if node, ok := plainItem(s.text, nodes); ok {
				if c := decodeNode(node, true, elem(k), known); c != nil {
					set(k, *c)
					continue
				}
			}
			if len(parse) > 0 && spans[parse[0]].section != s.section && !parsed() {
				return false
			}
			parse = append(parse, k)
			continue
		}
		if !parsed() {
			return false
		}
		c := decodeChunk(s, elem(k), known)
		if c == nil {
			return false
		}
		set(k, *c)
	}
	return parsed()
}

// decodeItems parses the item spans at the indexes run, of one section, as
// one sequence and decodes each item, or returns nil when that sequence
// is not exactly those items, each decoding cleanly. The items come out as
// each span's own parse gives them: a span's text starts with its item's
// "- " at the section's indentation and its other lines are deeper, so a
// sequence of exactly as many items holds each span's item alone (and no
// alias ties one item to another: a file with an anchor or alias is parsed
// whole, see plainASCII).
func decodeItems(spans []span, run []int, elem reflect.Type, known schema) []chunk {
	size := 0
	for _, k := range run {
		size += len(spans[k].text) + 1
	}
	text := make([]byte, 0, size)
	for _, k := range run {
		text = append(text, spans[k].text...)
		if !strings.HasSuffix(spans[k].text, "\n") {
			text = append(text, '\n')
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil || len(doc.Content) != 1 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode || len(root.Content) != len(run) {
		return nil
	}
	chunks := make([]chunk, len(run))
	for i, node := range root.Content {
		c := decodeNode(node, true, elem, known)
		if c == nil {
			return nil
		}
		chunks[i] = *c
	}
	return chunks
}

// decodeChunk parses and decodes one span, or returns nil when it does not
// decode cleanly on its own.
func decodeChunk(s span, elem reflect.Type, known schema) *chunk {
	node := spanNode(s)
	if node == nil {
		return nil
	}
	return decodeNode(node, s.item, elem, known)
}

// decodeNode decodes a span's node (an item's, when item), or returns nil
// when it has fields elem does not know (read in known) or does not decode.
func decodeNode(node *yaml.Node, item bool, elem reflect.Type, known schema) *chunk {
	if item && node.Kind == yaml.ScalarNode && node.ShortTag() == "!!null" {
		return &chunk{null: true}
	}
	if len(known.unknown(node, elem, "")) > 0 {
		return nil
	}
	v := reflect.New(elem)
	if err := node.Decode(v.Interface()); err != nil {
		return nil
	}
	return &chunk{value: v.Elem()}
}

// splitTopology cuts a file into top-level sections and the items of
// top-level block sequences. It reports false when the file is not a plain
// block mapping whose parts stand alone. A part's text is a substring of
// the file's.
func splitTopology(data []byte, hint int) ([]span, bool) {
	if !plainASCII(data) {
		return nil, false
	}
	// The spans' texts are read during Parse only (hashed, and parsed
	// into values of their own), so they may share data's bytes: a copy
	// was the file's size again at the peak of a large start.
	text := unsafe.String(unsafe.SliceData(data), len(data))
	lines := strings.SplitAfter(text, "\n")
	// at[i] is the offset of line i in text; at[len(lines)] its end.
	at := make([]int, len(lines)+1)
	for i, line := range lines {
		at[i+1] = at[i] + len(line)
	}
	spans := make([]span, 0, hint+hint/8) // the last file's parts, and room to grow
	seen := map[string]bool{}
	for i := 0; i < len(lines); {
		line := lines[i]
		if isBlankOrComment(line) {
			i++
			continue
		}
		key, rest, ok := topKey(line)
		if !ok || seen[key] {
			return nil, false
		}
		// The key outlives the call in the parser's cache: a copy, so
		// that it does not hold the whole file's text in memory.
		key = strings.Clone(key)
		seen[key] = true
		j := i + 1
		for j < len(lines) && (isBlankOrComment(lines[j]) || lines[j][0] == ' ' || lines[j][0] == '-') {
			if strings.HasPrefix(lines[j], "---") {
				return nil, false
			}
			j++
		}
		keyLine := i + 1
		if items, ok := splitSequence(spans, key, keyLine, lines, i+1, j, rest, text, at); ok {
			spans = items
		} else {
			spans = append(spans, span{section: key, keyLine: keyLine, first: keyLine, text: text[at[i]:at[j]]})
		}
		i = j
	}
	return spans, true
}

// splitSequence cuts lines[from:to], the block under a top-level key, into
// the items of a block sequence, appended to spans. It reports false when the block is not a
// block sequence whose items start at one indentation. An item's text runs
// from its first line to its last line that is not blank or a comment,
// blank lines and comments between them included (left out, they shifted
// the line numbers of what followed them: FuzzParserMatchesParse found it).
func splitSequence(spans []span, key string, keyLine int, lines []string, from, to int, rest, text string, at []int) ([]span, bool) {
	if r := strings.TrimSpace(rest); r != "" && !strings.HasPrefix(r, "#") {
		return nil, false // a value on the key's line
	}
	indent := -1
	var (
		start int // the current item's first line
		last  int // the current item's last line that is not blank
	)
	before := len(spans)
	closeItem := func() {
		if len(spans) > before {
			spans[len(spans)-1].text = text[at[start]:at[last+1]]
		}
	}
	for k := from; k < to; k++ {
		line := lines[k]
		if isBlankOrComment(line) {
			continue
		}
		n := len(line) - len(strings.TrimLeft(line, " "))
		item := strings.HasPrefix(line[n:], "- ") || strings.TrimRight(line[n:], "\n") == "-"
		switch {
		case indent < 0 && !item:
			return nil, false
		case indent < 0:
			indent = n
		case n < indent || (n == indent && !item):
			return nil, false
		}
		if n == indent && item {
			closeItem()
			spans = append(spans, span{section: key, item: true, keyLine: keyLine, first: k + 1})
			start = k
		}
		last = k
	}
	closeItem()
	return spans, len(spans) > before
}

// plainASCII reports whether data holds printable ASCII and newlines only,
// without the anchors and aliases (& and *) that tie parts together. Tabs,
// CRs, other control characters and non-ASCII text are left to Parse,
// whose YAML reader decides what it accepts ("#\f", a comment with a form
// feed, is an error there: FuzzParserMatchesParse found the Parser taking
// it as a comment).
func plainASCII(data []byte) bool {
	// Eight bytes at a time: a word with no byte at or above 0x7f or below
	// 0x20, and no '&' or '*', is plain; any other word (a newline in it,
	// about one in twenty) is looked at byte by byte.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(x uint64) bool { return (x-ones)&^x&highs != 0 }
	i := 0
	for ; i+8 <= len(data); i += 8 {
		x := binary.LittleEndian.Uint64(data[i:])
		// A byte at or above 0x80, one equal to 0x7f, one below 0x20
		// (exact once no byte is at or above 0x80), an '&' or a '*'.
		if x&highs != 0 || hasZero(x^(ones*0x7f)) || (x-ones*0x20)&^x&highs != 0 || hasZero(x^(ones*'&')) || hasZero(x^(ones*'*')) {
			if !plainBytes(data[i : i+8]) {
				return false
			}
		}
	}
	return plainBytes(data[i:])
}

// plainBytes is plainASCII a byte at a time.
func plainBytes(data []byte) bool {
	for _, b := range data {
		if b == '&' || b == '*' || b < 0x20 && b != '\n' || b >= 0x7f {
			return false
		}
	}
	return true
}

// topKey reads a top-level "key:" line.
func topKey(line string) (key, rest string, ok bool) {
	colon := strings.IndexByte(line, ':')
	if colon <= 0 {
		return "", "", false
	}
	for i := 0; i < colon; i++ {
		c := line[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return "", "", false
		}
	}
	rest = line[colon+1:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\n' {
		return "", "", false
	}
	return line[:colon], rest, true
}

func isBlankOrComment(line string) bool {
	t := strings.TrimLeft(line, " ")
	return t == "" || t == "\n" || t[0] == '#'
}

// yamlFieldIndexes maps the YAML keys of a struct type to field indexes.
func yamlFieldIndexes(t reflect.Type) map[string]int {
	idx := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		idx[key] = i
	}
	return idx
}
