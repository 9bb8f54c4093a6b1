package topology

import (
	_ "embed" // the published gateway table
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"gopkg.in/yaml.v3"
)

// Published is the value of a region's gateways that takes them from the
// table Azure published for its region (published_gateways.yaml):
//
//	regions:
//	  - {name: eastus2, gateways: published}
const Published = "published"

//go:embed published_gateways.yaml
var publishedYAML []byte

// publishedGateways is the published table: region -> primary, then the
// secondary and tertiary addresses where Azure has them.
var publishedGateways = func() map[string][]string {
	var m map[string][]string
	if err := yaml.Unmarshal(publishedYAML, &m); err != nil {
		panic("topology: published_gateways.yaml: " + err.Error()) // it is part of the source
	}
	return m
}()

// PublishedGateways returns the published gateway addresses of a region
// (primary first), or nil when Azure published none for it.
func PublishedGateways(region string) []string { return slices.Clone(publishedGateways[region]) }

// PublishedRegions returns the regions of the published table, sorted.
func PublishedRegions() []string { return slices.Sorted(maps.Keys(publishedGateways)) }

// GatewayList is a region's gateway addresses: primary first, then an
// optional secondary and tertiary (T1); or Published, written as a scalar.
type GatewayList []string

// IsPublished reports whether the list stands for the published table.
func (g GatewayList) IsPublished() bool { return len(g) == 1 && g[0] == Published }

// UnmarshalYAML reads a sequence of addresses, or the scalar published.
func (g *GatewayList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == Published {
		*g = GatewayList{Published}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return fmt.Errorf("gateways: want a list of addresses or %q: %w", Published, err)
	}
	*g = list
	return nil
}

// MarshalYAML writes published as the scalar it was read as.
func (g GatewayList) MarshalYAML() (any, error) {
	if g.IsPublished() {
		return Published, nil
	}
	return []string(g), nil
}

// UnmarshalJSON reads an array of addresses, or the string "published".
func (g *GatewayList) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil && s == Published {
		*g = GatewayList{Published}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("gateways: want a list of addresses or %q: %w", Published, err)
	}
	*g = list
	return nil
}

// MarshalJSON writes published as the string it was read as.
func (g GatewayList) MarshalJSON() ([]byte, error) {
	if g.IsPublished() {
		return json.Marshal(Published)
	}
	return json.Marshal([]string(g))
}

// Addresses returns the region's gateway addresses: its own, or the
// published table's (nil when Azure published none for the region).
func (r Region) Addresses() []string {
	if r.Gateways.IsPublished() {
		return publishedGateways[r.Name]
	}
	return r.Gateways
}
