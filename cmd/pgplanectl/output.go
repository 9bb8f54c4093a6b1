package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/jmespath/go-jmespath"
	"gopkg.in/yaml.v3"
)

// outputs are the --output formats, as az spells them.
var outputs = []string{"table", "json", "yaml", "tsv", "none"}

// checkOutput refuses an unknown --output.
func (c *common) checkOutput() error {
	if !slices.Contains(outputs, c.output) {
		return fmt.Errorf("--output %q: want %s", c.output, strings.Join(outputs, ", "))
	}
	return nil
}

// render prints an API answer: table with the command's own table printer
// (nil: a generic one), or json, yaml, tsv or nothing, after --query (a
// JMESPath expression over the answer's JSON, as az's --query).
func (c *common) render(w io.Writer, answer []byte, table func(io.Writer, json.RawMessage) error) error {
	if c.query == "" && c.output == "table" && table != nil {
		return table(w, answer)
	}
	var v any
	if err := json.Unmarshal(answer, &v); err != nil {
		return err
	}
	if c.query != "" {
		res, err := jmespath.Search(c.query, v)
		if err != nil {
			return fmt.Errorf("--query %q: %w", c.query, err)
		}
		v = res
	}
	switch c.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "tsv":
		return writeTSV(w, v)
	case "table":
		return writeTable(w, v)
	}
	return nil
}

// writeTSV prints values as az's tsv does: a line per element of a list,
// an object's scalar values in the order of its keys (sorted), tab
// separated; nested objects and lists are left out.
func writeTSV(w io.Writer, v any) error {
	rows, ok := v.([]any)
	if !ok {
		rows = []any{v}
	}
	for _, r := range rows {
		var cells []string
		switch r := r.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(r)) {
				if s, ok := scalar(r[k]); ok {
					cells = append(cells, s)
				}
			}
		default:
			if s, ok := scalar(r); ok {
				cells = append(cells, s)
			}
		}
		if _, err := fmt.Fprintln(w, strings.Join(cells, "\t")); err != nil {
			return err
		}
	}
	return nil
}

// writeTable prints a query's result as a table: a column per key of the
// objects (sorted), a row per object; a scalar or a list of scalars a value
// per line.
func writeTable(w io.Writer, v any) error {
	rows, ok := v.([]any)
	if !ok {
		rows = []any{v}
	}
	var keys []string
	for _, r := range rows {
		if m, ok := r.(map[string]any); ok {
			for k := range m {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	slices.Sort(keys)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(keys) > 0 {
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(keys, "\t")))
	}
	for _, r := range rows {
		m, ok := r.(map[string]any)
		if !ok {
			s, _ := scalar(r)
			fmt.Fprintln(tw, s)
			continue
		}
		cells := make([]string, len(keys))
		for i, k := range keys {
			if s, ok := scalar(m[k]); ok {
				cells[i] = s
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// scalar formats a JSON scalar; ok is false for objects and lists.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case bool, float64:
		return fmt.Sprint(v), true
	}
	return "", false
}
