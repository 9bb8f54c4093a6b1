package topology

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads and validates a topology file. On failure the error is a
// Violations listing every problem at once, each with the file, the line and
// the rule ID. Warnings (D10) are returned beside a valid topology. It
// gives Parse's result through a Parser, which reads a large file's items
// on every core and without yaml.v3's scanner where their YAML is plain.
func Load(path string) (*Topology, Violations, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading topology: %w", err)
	}
	var p Parser
	return p.Parse(path, data)
}

// Parse decodes and validates the YAML text of a topology file; name is used in
// messages. It is Load without the file system. A file that decodes but
// breaks a rule comes back with its Violations and the decoded topology, so
// that a caller can also check what the file would change (CheckTransition);
// it is never served.
func Parse(name string, data []byte) (*Topology, Violations, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if err.Error() == "EOF" {
			return &Topology{}, nil, nil
		}
		return nil, nil, Violations{{Rule: "schema", File: name, Line: yamlErrorLine(err), Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if bad := unknownFields(doc, reflect.TypeOf(Topology{}), name); len(bad) > 0 {
		return nil, nil, bad
	}
	t := &Topology{}
	if err := doc.Decode(t); err != nil {
		return nil, nil, Violations{{Rule: "schema", File: name, Line: yamlErrorLine(err), Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	d := everything(t)
	settle(t, &d)
	violations, warnings := Validate(t)
	locate(violations, doc, name)
	locate(warnings, doc, name)
	if len(violations) > 0 {
		return t, warnings, violations
	}
	return t, warnings, nil
}

// locate sets File and Line of each violation from its Path.
func locate(vs Violations, doc *yaml.Node, name string) {
	for i := range vs {
		vs[i].File = name
		vs[i].Line = lineOf(doc, vs[i].Path)
	}
}

// lineOf finds the line of a dotted path such as "vnets.0.subnets.1.cidr",
// falling back to the deepest part of the path that exists.
func lineOf(n *yaml.Node, path string) int {
	if path == "" {
		return n.Line
	}
	return lineIn(n, strings.Split(path, "."), n.Line, 0)
}

// lineIn walks parts down from n; line is the answer if nothing matches and
// offset is added to the lines of the nodes below n.
func lineIn(n *yaml.Node, parts []string, line, offset int) int {
	for _, part := range parts {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line = n.Content[i].Line + offset
					next = n.Content[i+1]
				}
			}
		case yaml.SequenceNode:
			if idx, err := strconv.Atoi(part); err == nil && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line + offset
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// unknownFields walks the YAML tree beside the Go type it decodes into and
// reports every mapping key that has no field, with its line.
func unknownFields(n *yaml.Node, t reflect.Type, name string) Violations {
	return schema{}.unknown(n, t, name)
}

// schema holds the YAML keys of the struct types one walk has met, so
// that a walk over many servers reads each type's fields once.
type schema map[reflect.Type]map[string]reflect.Type

// fields returns the YAML keys of a struct type and their field types.
func (s schema) fields(t reflect.Type) map[string]reflect.Type {
	f, ok := s[t]
	if !ok {
		f = yamlFields(t)
		s[t] = f
	}
	return f
}

// unknown is unknownFields with the walk's schema.
func (s schema) unknown(n *yaml.Node, t reflect.Type, name string) Violations {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out Violations
	switch {
	case n.Kind == yaml.AliasNode:
		return nil
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := s.fields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			ft, ok := fields[key.Value]
			if !ok {
				out = append(out, Violation{Rule: "schema", File: name, Line: key.Line,
					Message: fmt.Sprintf("unknown field %q in %s (known: %s)", key.Value, typeNoun(t), strings.Join(sortedKeys(fields), ", "))})
				continue
			}
			out = append(out, s.unknown(n.Content[i+1], ft, name)...)
		}
	case t == serverListType && n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			out = append(out, s.unknown(item, serverType, name)...)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			out = append(out, s.unknown(item, t.Elem(), name)...)
		}
	}
	return out
}

// The server list is a sequence of servers in YAML, held in a type of its
// own: the walks by reflection (unknownFields, the Parser) treat it as the
// slice it reads as.
var (
	serverListType = reflect.TypeOf(ServerList{})
	serverType     = reflect.TypeOf(&Server{})
)

// itemType returns the type of a sequence field's items.
func itemType(t reflect.Type) reflect.Type {
	if t == serverListType {
		return serverType
	}
	return t.Elem()
}

// yamlFields maps the YAML keys of a struct type to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "-" || !f.IsExported() {
			continue
		}
		if key == "" {
			key = strings.ToLower(f.Name)
		}
		fields[key] = f.Type
	}
	return fields
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func typeNoun(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(Topology{}):
		return "the topology"
	case reflect.TypeOf(VNet{}):
		return "a vnet"
	case reflect.TypeOf(PrivateDNSZone{}):
		return "a private DNS zone"
	case reflect.TypeOf(FirewallRule{}):
		return "a firewall rule"
	}
	return "a " + strings.ToLower(t.Name())
}

// yamlErrorLine pulls "line N" out of a yaml.v3 error message.
func yamlErrorLine(err error) int {
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(rest)
		}
		if n, err := strconv.Atoi(rest[:end]); err == nil {
			return n
		}
	}
	return 0
}
