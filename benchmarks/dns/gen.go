package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// scale is the size of the generated topology.
type scale struct {
	servers, zones, vnets, regions int
}

// generated is what gen wrote.
type generated struct {
	topology string   // pgplane's topology file
	zoneFile string   // the same records as a zone file, for CoreDNS's file plugin
	queries  string   // dnsperf's query file
	sources  []string // one client address inside each VNet
}

// vnetSpace returns the /24 address space of VNet i, inside 127.0.0.0/8.
func vnetSpace(i int) (a, b int) { return 10 + i/250, i % 250 }

// gen writes a topology of the given scale: half the servers public, half
// private; private server j lives in VNet j%vnets and zone j%zones; zone z is
// linked to VNets z%vnets and (z+vnets/2)%vnets; VNets are peered in pairs.
func gen(dir string, s scale) (generated, error) {
	var topo, zone, queries strings.Builder
	g := generated{
		topology: filepath.Join(dir, "topology.yaml"),
		zoneFile: filepath.Join(dir, "db.postgres.database.azure.com"),
		queries:  filepath.Join(dir, "queries.txt"),
	}
	fmt.Fprintf(&zone, "$ORIGIN postgres.database.azure.com.\n@ 3600 IN SOA ns1.pgplane.invalid. hostmaster.postgres.database.azure.com. 1 3600 600 86400 5\n@ 3600 IN NS ns1.pgplane.invalid.\n")
	topo.WriteString("regions:\n")
	for r := 0; r < s.regions; r++ {
		fmt.Fprintf(&topo, "  - {name: r%d, gateways: [127.0.0.%d, 127.0.0.%d]}\n", r, 10+2*r, 11+2*r)
		fmt.Fprintf(&zone, "r%d.control 5 IN A 127.0.0.%d\n", r, 10+2*r)
	}
	topo.WriteString("vnets:\n")
	for v := 0; v < s.vnets; v++ {
		a, b := vnetSpace(v)
		fmt.Fprintf(&topo, "  - name: vnet-%03d\n    region: r%d\n    addressSpaces: [127.%d.%d.0/24]\n    peerings: [vnet-%03d]\n    subnets: [{name: db, cidr: 127.%d.%d.0/26, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]\n",
			v, v%s.regions, a, b, v^1, a, b)
		g.sources = append(g.sources, fmt.Sprintf("127.%d.%d.100", a, b))
	}
	topo.WriteString("privateDnsZones:\n")
	for z := 0; z < s.zones; z++ {
		fmt.Fprintf(&topo, "  - {name: z%04d.private.postgres.database.azure.com, links: [vnet-%03d, vnet-%03d]}\n", z, z%s.vnets, (z+s.vnets/2)%s.vnets)
	}
	topo.WriteString("servers:\n")
	var names []string
	private := s.servers / 2
	for j := 0; j < private; j++ {
		v, z := j%s.vnets, j%s.zones
		a, b := vnetSpace(v)
		addr := fmt.Sprintf("127.%d.%d.%d", a, b, 4+j/s.vnets)
		name := fmt.Sprintf("priv-%05d", j)
		fmt.Fprintf(&topo, "  - {name: %s, region: r%d, access: private, network: {vnet: vnet-%03d, subnet: db, privateDnsZone: z%04d.private.postgres.database.azure.com}, addresses: {primary: %s}, backends: {primary: \"%s:5432\"}}\n",
			name, v%s.regions, v, z, addr, addr)
		fmt.Fprintf(&zone, "%s 5 IN CNAME %s.z%04d.private.postgres.database.azure.com.\n%s.z%04d.private 5 IN A %s\n", name, name, z, name, z, addr)
		names = append(names, name)
	}
	for i := 0; i < s.servers-private; i++ {
		name := fmt.Sprintf("pub-%05d", i)
		fmt.Fprintf(&topo, "  - {name: %s, region: r%d, access: public, backends: {primary: \"127.0.0.1:5432\"}, firewallRules: [{name: office, startIpAddress: 203.0.113.%d, endIpAddress: 203.0.113.%d}]}\n",
			name, i%s.regions, i%200, i%200+10)
		fmt.Fprintf(&zone, "%s 5 IN CNAME r%d.control.postgres.database.azure.com.\n", name, i%s.regions)
		names = append(names, name)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names {
		fmt.Fprintf(&queries, "%s.postgres.database.azure.com A\n", n)
	}
	for path, text := range map[string]string{g.topology: topo.String(), g.zoneFile: zone.String(), g.queries: queries.String()} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return g, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return g, nil
}
