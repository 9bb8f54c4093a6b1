package topology

import (
	"fmt"
	"strings"
)

// Violation is one broken rule. Its message names the object, the field and the
// rule, the same whether it comes from the topology loader or the admin API (A2).
type Violation struct {
	// Rule is the SPEC.md rule ID (T6, Z2, F1…), or "schema" for the shape of
	// the data (a missing name, an unknown reference, a malformed address).
	Rule string
	// Path locates the field in the topology: "vnets.0.subnets.1.cidr".
	Path string
	// Object names the object: `subnet "db" in vnet "app-vnet"`.
	Object string
	// Field is the field's name as written in the file: "cidr".
	Field string
	// Message says what is wrong and how to put it right.
	Message string
	// File and Line are set by the loader; zero for a change made at run time.
	File string
	Line int
}

// Error formats the violation as FILE:LINE: RULE: OBJECT: FIELD: MESSAGE.
func (v Violation) Error() string {
	var b strings.Builder
	if v.File != "" {
		fmt.Fprintf(&b, "%s:%d: ", v.File, v.Line)
	}
	b.WriteString(v.Rule)
	b.WriteString(": ")
	if v.Object != "" {
		b.WriteString(v.Object)
		b.WriteString(": ")
	}
	if v.Field != "" {
		b.WriteString(v.Field)
		b.WriteString(": ")
	}
	b.WriteString(v.Message)
	return b.String()
}

// Violations is every rule a topology breaks. It is an error when not empty.
type Violations []Violation

// Error lists the violations one per line.
func (vs Violations) Error() string {
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = v.Error()
	}
	return strings.Join(lines, "\n")
}

// Rules returns the rule IDs of the violations, in order, for tests and metrics.
func (vs Violations) Rules() []string {
	rules := make([]string, len(vs))
	for i, v := range vs {
		rules[i] = v.Rule
	}
	return rules
}

// Err returns vs as an error, or nil when there is none.
func (vs Violations) Err() error {
	if len(vs) == 0 {
		return nil
	}
	return vs
}
