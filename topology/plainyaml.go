package topology

// A reader for the plainest YAML of a topology file's items, which makes
// the nodes yaml.v3 would make of them without yaml.v3's scanner: at
// 100,000 servers yaml.v3 spends about a second of a start on its tokens.
// Anything outside the subset below is left to yaml.v3; this reader never
// guesses.

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// plainItem parses the text of one item of a top-level block sequence
// ("  - {name: a-db, region: eastus2}\n", or "  - name: a-db\n    region:
// eastus2\n") into the node yaml.v3 makes of that item, when the text keeps
// to this subset of YAML:
//   - block mappings with one key per line, block sequences, each nested
//     node deeper than its parent's key or dash (no sequence at its key's
//     column);
//   - flow mappings and sequences on one line, without a trailing comma;
//   - keys of letters, digits and '_', followed by ": " or the line's end;
//   - plain scalars of letters, digits and "_./+" (and '-', not first),
//     quoted scalars without escapes or quotes inside;
//   - no comment, tab, anchor, alias, tag, empty value or multi-line
//     scalar.
//
// ok is false for any other text. Nodes come from, and scalars' tags are
// remembered in, into.
func plainItem(text string, into *plainNodes) (node *yaml.Node, ok bool) {
	r := plainReader{lines: strings.Split(strings.TrimSuffix(text, "\n"), "\n"), nodes: into}
	for i, l := range r.lines {
		for j := 0; j < len(l); j++ {
			if l[j] < 0x20 || l[j] >= 0x7f || l[j] == '#' {
				return nil, false // a control byte, a tab, non-ASCII, a comment
			}
		}
		if strings.TrimLeft(l, " ") == "" {
			r.lines[i] = "" // a blank line separates nothing here
		}
	}
	_, rest, isItem := r.dash(0)
	if !isItem {
		return nil, false
	}
	node, next, ok := r.entry(0, rest)
	if !ok || r.nextLine(next) < len(r.lines) {
		return nil, false
	}
	return node, true
}

// plainReader reads a span's lines.
type plainReader struct {
	lines []string
	depth int // of the block node read now
	nodes *plainNodes
}

// plainNodes makes the nodes of plain items, a block of them at a time
// (they live only until their items are decoded), and remembers the tags
// yaml.v3 resolves plain scalars to: keys and most values repeat from item
// to item. The zero value is ready to use.
type plainNodes struct {
	free []yaml.Node
	tags map[string]string
}

// Tags are remembered for scalars of at most maxPlainTagged bytes (keys,
// regions, access modes; not names or addresses, which do not repeat), up
// to maxPlainTags of them.
const (
	maxPlainTagged = 12
	maxPlainTags   = 4096
)

func (p *plainNodes) node(kind yaml.Kind, style yaml.Style, value string, line, column int) *yaml.Node {
	if len(p.free) == 0 {
		p.free = make([]yaml.Node, 256)
	}
	n := &p.free[0]
	p.free = p.free[1:]
	n.Kind, n.Style, n.Value, n.Line, n.Column = kind, style, value, line, column
	return n
}

// scalar makes a plain scalar's node with the tag yaml.v3 gives it.
func (p *plainNodes) scalar(value string, line, column int) *yaml.Node {
	n := p.node(yaml.ScalarNode, 0, value, line, column)
	if len(value) > maxPlainTagged {
		n.Tag = n.ShortTag()
		return n
	}
	tag, ok := p.tags[value]
	if !ok {
		tag = n.ShortTag()
		if p.tags == nil {
			p.tags = map[string]string{}
		}
		if len(p.tags) < maxPlainTags {
			p.tags[value] = tag
		}
	}
	n.Tag = tag
	return n
}

// nextLine returns the index of the first line at or after i that is not
// blank.
func (r *plainReader) nextLine(i int) int {
	for i < len(r.lines) && r.lines[i] == "" {
		i++
	}
	return i
}

// dash reads line i as a sequence entry: its dash's column and what follows
// "- ".
func (r *plainReader) dash(i int) (column int, rest string, ok bool) {
	l := r.lines[i]
	column = len(l) - len(strings.TrimLeft(l, " "))
	if !strings.HasPrefix(l[column:], "- ") {
		return 0, "", false
	}
	return column, strings.TrimLeft(l[column+2:], " "), true
}

// entry reads a sequence entry whose dash is on line i and whose text
// after the dash is rest: a value on the line, or a block mapping that
// starts on it. It returns the node and the line after it.
func (r *plainReader) entry(i int, rest string) (*yaml.Node, int, bool) {
	if rest == "" || strings.HasPrefix(rest, "- ") {
		return nil, 0, false // a value on the next lines, or a nested sequence
	}
	if key, value, isKey := plainKey(rest); isKey {
		// A block mapping whose first key is on the dash's line, at the
		// column after "- " and its spaces.
		column := len(r.lines[i]) - len(rest)
		return r.mapping(i, column, key, value)
	}
	// A line after the value deeper than the dash would continue it (a
	// multi-line scalar): whoever reads the next line refuses it.
	node, ok := inlineValue(rest, r.nodes)
	return node, i + 1, ok
}

// mapping reads a block mapping at column whose first key is on line i
// (its key and what follows its colon given), up to the first line at a
// lower column.
func (r *plainReader) mapping(i, column int, key, value string) (*yaml.Node, int, bool) {
	m := r.nodes.node(yaml.MappingNode, 0, "", i+1, column+1)
	m.Tag = "!!map"
	for {
		k := r.nodes.scalar(key, i+1, column+1)
		var v *yaml.Node
		var ok bool
		if value != "" {
			if v, ok = inlineValue(value, r.nodes); !ok {
				return nil, 0, false
			}
			i++
		} else if v, i, ok = r.nested(i+1, column); !ok {
			return nil, 0, false
		}
		m.Content = append(m.Content, k, v)
		i = r.nextLine(i)
		if i == len(r.lines) || indentOf(r.lines[i]) < column {
			return m, i, true
		}
		if indentOf(r.lines[i]) > column {
			return nil, 0, false // a multi-line scalar, or a key deeper than its mapping
		}
		var isKey bool
		if key, value, isKey = plainKey(r.lines[i][column:]); !isKey {
			return nil, 0, false
		}
	}
}

// nested reads the block node a key at column opens on line i: a block
// sequence or a block mapping, deeper than the key.
func (r *plainReader) nested(i, column int) (*yaml.Node, int, bool) {
	if r.depth++; r.depth > maxPlainDepth {
		return nil, 0, false
	}
	defer func() { r.depth-- }()
	i = r.nextLine(i)
	if i == len(r.lines) || indentOf(r.lines[i]) <= column {
		return nil, 0, false // an empty value: null, which yaml.v3 reads
	}
	if dash, _, isItem := r.dash(i); isItem {
		return r.sequence(i, dash)
	}
	inner := indentOf(r.lines[i])
	key, value, isKey := plainKey(r.lines[i][inner:])
	if !isKey {
		return nil, 0, false
	}
	return r.mapping(i, inner, key, value)
}

// sequence reads a block sequence whose dashes are at column, from line i.
func (r *plainReader) sequence(i, column int) (*yaml.Node, int, bool) {
	s := r.nodes.node(yaml.SequenceNode, 0, "", i+1, column+1)
	s.Tag = "!!seq"
	for {
		dash, rest, isItem := r.dash(i)
		if !isItem || dash != column {
			return nil, 0, false
		}
		item, next, ok := r.entry(i, rest)
		if !ok {
			return nil, 0, false
		}
		s.Content = append(s.Content, item)
		i = r.nextLine(next)
		if i == len(r.lines) || indentOf(r.lines[i]) < column {
			return s, i, true
		}
	}
}

func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

// plainKey cuts "key: value" or "key:" into the key and the value's text.
func plainKey(s string) (key, value string, ok bool) {
	n := 0
	for n < len(s) && isKeyByte(s[n]) {
		n++
	}
	if n == 0 || n > maxPlainKey || n == len(s) || s[n] != ':' {
		return "", "", false
	}
	if n+1 == len(s) {
		return s[:n], "", true
	}
	if s[n+1] != ' ' {
		return "", "", false
	}
	return s[:n], strings.TrimSpace(s[n+1:]), true
}

// inlineValue reads a value that takes the rest of a line: a scalar or a
// flow collection.
func inlineValue(s string, nodes *plainNodes) (*yaml.Node, bool) {
	f := flowReader{s: s, nodes: nodes}
	n, ok := f.value()
	if !ok || strings.TrimRight(f.s[f.at:], " ") != "" {
		return nil, false
	}
	return n, true
}

// flowReader reads one line's flow value.
type flowReader struct {
	s     string
	at    int
	depth int // of the collection read now, from the line's
	nodes *plainNodes
}

func (f *flowReader) skipSpaces() {
	for f.at < len(f.s) && f.s[f.at] == ' ' {
		f.at++
	}
}

// value reads a flow mapping, a flow sequence or a scalar.
func (f *flowReader) value() (*yaml.Node, bool) {
	if f.at == len(f.s) {
		return nil, false
	}
	switch f.s[f.at] {
	case '{':
		return f.collection(yaml.MappingNode, '}')
	case '[':
		return f.collection(yaml.SequenceNode, ']')
	case '"', '\'':
		return f.quoted(f.s[f.at])
	}
	return f.plain()
}

// collection reads a flow mapping or sequence up to its closing byte.
func (f *flowReader) collection(kind yaml.Kind, closing byte) (*yaml.Node, bool) {
	if f.depth++; f.depth > maxPlainDepth {
		return nil, false
	}
	defer func() { f.depth-- }()
	n := f.nodes.node(kind, yaml.FlowStyle, "", 1, f.at+1)
	n.Tag = n.ShortTag() // !!map or !!seq
	f.at++               // the opening bracket
	f.skipSpaces()
	if f.at < len(f.s) && f.s[f.at] == closing {
		f.at++
		return n, true
	}
	for {
		if kind == yaml.MappingNode {
			key, ok := f.key()
			if !ok {
				return nil, false
			}
			n.Content = append(n.Content, key)
		}
		v, ok := f.value()
		if !ok {
			return nil, false
		}
		n.Content = append(n.Content, v)
		f.skipSpaces()
		if f.at == len(f.s) {
			return nil, false
		}
		switch f.s[f.at] {
		case closing:
			f.at++
			return n, true
		case ',':
			f.at++
			f.skipSpaces()
		default:
			return nil, false
		}
	}
}

// key reads a flow mapping's key and the ": " after it.
func (f *flowReader) key() (*yaml.Node, bool) {
	from := f.at
	for f.at < len(f.s) && isKeyByte(f.s[f.at]) {
		f.at++
	}
	if f.at == from || f.at-from > maxPlainKey || f.at+1 >= len(f.s) || f.s[f.at] != ':' || f.s[f.at+1] != ' ' {
		return nil, false
	}
	k := f.nodes.scalar(f.s[from:f.at], 1, from+1)
	f.at += 2
	f.skipSpaces()
	return k, true
}

// plain reads a plain scalar: what resolves the same in every context.
func (f *flowReader) plain() (*yaml.Node, bool) {
	from := f.at
	if f.s[f.at] == '-' {
		return nil, false
	}
	for f.at < len(f.s) && isPlainByte(f.s[f.at]) {
		f.at++
	}
	if f.at == from {
		return nil, false
	}
	return f.nodes.scalar(f.s[from:f.at], 1, from+1), true
}

// quoted reads a quoted scalar without escapes: no backslash or quote of
// its kind inside, every byte printable.
func (f *flowReader) quoted(quote byte) (*yaml.Node, bool) {
	from := f.at + 1
	end := strings.IndexByte(f.s[from:], quote)
	if end < 0 {
		return nil, false
	}
	value := f.s[from : from+end]
	for i := 0; i < len(value); i++ {
		if value[i] < 0x20 || value[i] >= 0x7f || value[i] == '\\' {
			return nil, false
		}
	}
	f.at = from + end + 1
	if f.at < len(f.s) && f.s[f.at] == quote {
		return nil, false // '' inside a single-quoted scalar
	}
	style := yaml.DoubleQuotedStyle
	if quote == '\'' {
		style = yaml.SingleQuotedStyle
	}
	n := f.nodes.node(yaml.ScalarNode, style, value, 1, from)
	n.Tag = "!!str"
	return n, true
}

// maxPlainKey bounds a key's length (YAML's simple keys end at 1,024
// characters) and maxPlainDepth the collections inside one another
// (yaml.v3 refuses a document deeper than 10,000): the topology's keys
// and depths are far below both.
const (
	maxPlainKey   = 128
	maxPlainDepth = 32
)

func isKeyByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_'
}

func isPlainByte(b byte) bool {
	return isKeyByte(b) || b == '.' || b == '/' || b == '+' || b == '-'
}
