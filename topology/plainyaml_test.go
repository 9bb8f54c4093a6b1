package topology

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// plainItems are items plainItem reads: the forms of testdata/valid.yaml
// and of the bench-scale topology.
var plainItems = []string{
	"  - {name: priv-00000, region: r0, access: private, network: {vnet: vnet-000, subnet: db, privateDnsZone: z0000.private.postgres.database.azure.com}, addresses: {primary: 127.10.0.4}, backends: {primary: \"127.10.0.4:5432\"}}\n",
	"  - {name: pub-00001, region: r1, access: public, backends: {primary: \"127.0.0.1:5432\"}, firewallRules: [{name: office, startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.11}]}\n",
	"  - name: vnet-000\n    region: r0\n    addressSpaces: [127.10.0.0/24]\n    peerings: [vnet-001]\n    subnets: [{name: db, cidr: 127.10.0.0/26, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]\n",
	"  - name: orders-db\n    region: eastus2\n    access: private\n    network: {vnet: app-vnet, subnet: db, privateDnsZone: contoso.private.postgres.database.azure.com}\n    highAvailability: true\n    addresses: {primary: 10.0.1.4, standby: 10.0.1.5}\n    backends: {primary: \"10.0.1.4:5432\", standby: \"10.0.1.5:5432\"}\n    parameters: {require_secure_transport: \"on\", ssl_min_protocol_version: TLSv1.2}\n",
	"  - name: reports-db\n    region: eastus2\n    access: public\n    backends: {primary: '127.0.0.1:55432'}\n    firewallRules:\n      - {name: office, startIpAddress: 203.0.113.1, endIpAddress: 203.0.113.9}\n\n      - name: all\n        startIpAddress: 0.0.0.0\n        endIpAddress: 0.0.0.0\n",
	"- {name: eastus2, gateways: [192.0.2.10, 192.0.2.11]}",
	"  - name: app-vnet\n    subnets:\n      - name: db\n        cidr: 10.0.1.0/28\n    peerings: []\n    addressSpaces: [ 10.0.0.0/16 , 10.1.0.0/16 ]\n",
	"  - a-db\n",
	"  -   name: a-db\n      region: r0\n",
}

// The reader takes the plain forms of topology items and makes of them the
// nodes yaml.v3 makes; it leaves every other form to yaml.v3, which reads
// each of these differently from a guess, or refuses it.
//
// SPEC: A1
func TestPlainItemReadsWhatYAMLReads(t *testing.T) {
	for _, text := range plainItems {
		node, ok := plainItem(text, &plainNodes{})
		if !ok {
			t.Fatalf("plainItem refuses %q", text)
		}
		if err := sameAsYAML(text, node); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
	}
	for _, text := range []string{
		"  - {name: a-db} # the orders team\n",                  // a comment
		"  - name: a-db\n    region: east\n      us2\n",         // a multi-line plain scalar
		"  - name: a-db\n    firewallRules:\n    - {name: x}\n", // a sequence at its key's column
		"  - {name: a-db, region: r0,}\n",                       // a trailing comma
		"  - {name: \"a\\u0041\"}\n",                            // an escape
		"  - {name: 'it''s'}\n",                                 // a quote inside
		"  - {name: !!str 123}\n",                               // a tag
		"  - &a {name: a-db}\n",                                 // an anchor
		"  - {name: a-db, region:}\n",                           // an empty value
		"  - name:\n",                                           // an empty value
		"  - name: a-db\n  region: r0\n",                        // a line outside the item
		"  - {name: a-db,\n     region: r0}\n",                  // a flow mapping over two lines
		"  - name: a-db\n    region: r0\n     access: public\n", // a key deeper than its mapping
		"  - {name: a-db}\n    region: r0\n",                    // a line after a flow item
		"  - {name: -a-db}\n",                                   // a plain scalar starting with '-'
		"  - {name: a db}\n",                                    // a space inside a plain scalar
		"  - {name: 10.0.0.1:5432}\n",                           // a colon inside a plain scalar
		"  - - a\n",                                             // a nested sequence
		"  -\n",                                                 // a null item
		"  - name: a-db\n\tregion: r0\n",                        // a tab
		"  - {name: a-db}\f\n",                                  // a control byte (yaml.v3 refuses it)
		"  - " + strings.Repeat("k", 1100) + ": a\n",            // a key past 1,024 bytes (yaml.v3 refuses it)
		"  - {a: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "}\n", // collections 41 deep
	} {
		if _, ok := plainItem(text, &plainNodes{}); ok {
			t.Errorf("plainItem takes %q", text)
		}
	}
}

// FuzzPlainItemMatchesYAML: whatever plainItem takes, yaml.v3 reads as one
// sequence item with the same nodes, and decodes the same into each kind
// of topology item.
//
// SPEC: A1
func FuzzPlainItemMatchesYAML(f *testing.F) {
	for _, text := range plainItems {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		node, ok := plainItem(text, &plainNodes{})
		if !ok {
			return
		}
		if err := sameAsYAML(text, node); err != nil {
			t.Fatal(err)
		}
	})
}

// sameAsYAML compares plainItem's node of text with yaml.v3's, node by
// node and decoded into each kind of topology item.
func sameAsYAML(text string, node *yaml.Node) error {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return fmt.Errorf("plainItem takes what yaml.v3 refuses: %v", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.SequenceNode || len(doc.Content[0].Content) != 1 {
		return fmt.Errorf("yaml.v3 does not read one sequence item")
	}
	want := doc.Content[0].Content[0]
	if err := sameNode(want, node, "item"); err != nil {
		return err
	}
	for _, t := range []reflect.Type{serverType, reflect.TypeOf(VNet{}), reflect.TypeOf(PrivateDNSZone{}), reflect.TypeOf(Region{})} {
		a, b := reflect.New(t), reflect.New(t)
		errA, errB := want.Decode(a.Interface()), node.Decode(b.Interface())
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a.Interface(), b.Interface()) {
			return fmt.Errorf("decoded into %s: yaml.v3 %v (%v), plainItem %v (%v)", t, a.Elem(), errA, b.Elem(), errB)
		}
		if len(unknownFields(want, t, "")) != len(unknownFields(node, t, "")) {
			return fmt.Errorf("unknown fields of %s differ", t)
		}
	}
	return nil
}

// sameNode compares what decoding reads of two nodes: kind, tag, value,
// whether a scalar is quoted, and their contents.
func sameNode(want, got *yaml.Node, path string) error {
	const quoted = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	if want.Kind != got.Kind || want.Tag != got.Tag || want.Value != got.Value || want.Style&quoted != got.Style&quoted || len(want.Content) != len(got.Content) {
		return fmt.Errorf("%s: yaml.v3 kind %d tag %q value %q style %d, %d nodes inside; plainItem kind %d tag %q value %q style %d, %d nodes inside",
			path, want.Kind, want.Tag, want.Value, want.Style, len(want.Content), got.Kind, got.Tag, got.Value, got.Style, len(got.Content))
	}
	for i := range want.Content {
		if err := sameNode(want.Content[i], got.Content[i], fmt.Sprintf("%s.%d", path, i)); err != nil {
			return err
		}
	}
	return nil
}
