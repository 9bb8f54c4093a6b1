package benchkit

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// DNSScale is the size of a generated topology.
type DNSScale struct {
	Servers, Zones, VNets, Regions int
}

// DNSTopology is what GenerateDNS wrote.
type DNSTopology struct {
	Topology string   // pgplane's topology file
	ZoneFile string   // the same records as a zone file, for CoreDNS's file plugin
	Queries  string   // dnsperf's query file
	Sources  []string // one client address inside each VNet
}

// vnetSpace returns the /24 address space of VNet i, inside 127.0.0.0/8.
func vnetSpace(i int) (a, b int) { return 10 + i/250, i % 250 }

// ScaleShape is the topology make bench-scale generates for n servers: a
// private DNS zone per 10 servers, a VNet per 20, 10 regions. The scale
// benchmarks of the packages use it at 100,000 servers.
func ScaleShape(n int) DNSScale {
	return DNSScale{Servers: n, Zones: n / 10, VNets: n / 20, Regions: 10}
}

// GenerateDNS writes a topology of the given scale: half the servers public, half
// private; private server j lives in VNet j%vnets and zone j%zones; zone z is
// linked to VNets z%vnets and (z+vnets/2)%vnets; VNets are peered in pairs.
func GenerateDNS(dir string, s DNSScale) (DNSTopology, error) {
	var topo, zone, queries strings.Builder
	g := DNSTopology{
		Topology: filepath.Join(dir, "topology.yaml"),
		ZoneFile: filepath.Join(dir, "db.postgres.database.azure.com"),
		Queries:  filepath.Join(dir, "queries.txt"),
	}
	fmt.Fprintf(&zone, "$ORIGIN postgres.database.azure.com.\n@ 3600 IN SOA ns1.pgplane.invalid. hostmaster.postgres.database.azure.com. 1 3600 600 86400 5\n@ 3600 IN NS ns1.pgplane.invalid.\n")
	topo.WriteString("regions:\n")
	for r := 0; r < s.Regions; r++ {
		fmt.Fprintf(&topo, "  - {name: r%d, gateways: [127.0.0.%d, 127.0.0.%d]}\n", r, 10+2*r, 11+2*r)
		fmt.Fprintf(&zone, "r%d.control 5 IN A 127.0.0.%d\n", r, 10+2*r)
	}
	topo.WriteString("vnets:\n")
	for v := 0; v < s.VNets; v++ {
		a, b := vnetSpace(v)
		fmt.Fprintf(&topo, "  - name: vnet-%03d\n    region: r%d\n    addressSpaces: [127.%d.%d.0/24]\n    peerings: [vnet-%03d]\n    subnets: [{name: db, cidr: 127.%d.%d.0/26, delegation: Microsoft.DBforPostgreSQL/flexibleServers}]\n",
			v, v%s.Regions, a, b, v^1, a, b)
		g.Sources = append(g.Sources, fmt.Sprintf("127.%d.%d.100", a, b))
	}
	topo.WriteString("privateDnsZones:\n")
	for z := 0; z < s.Zones; z++ {
		fmt.Fprintf(&topo, "  - {name: z%04d.private.postgres.database.azure.com, links: [vnet-%03d, vnet-%03d]}\n", z, z%s.VNets, (z+s.VNets/2)%s.VNets)
	}
	topo.WriteString("servers:\n")
	var names []string
	private := s.Servers / 2
	for j := 0; j < private; j++ {
		v, z := j%s.VNets, j%s.Zones
		a, b := vnetSpace(v)
		addr := fmt.Sprintf("127.%d.%d.%d", a, b, 4+j/s.VNets)
		name := fmt.Sprintf("priv-%05d", j)
		fmt.Fprintf(&topo, "  - {name: %s, region: r%d, access: private, network: {vnet: vnet-%03d, subnet: db, privateDnsZone: z%04d.private.postgres.database.azure.com}, addresses: {primary: %s}, backends: {primary: \"%s:5432\"}}\n",
			name, v%s.Regions, v, z, addr, addr)
		fmt.Fprintf(&zone, "%s 5 IN CNAME %s.z%04d.private.postgres.database.azure.com.\n%s.z%04d.private 5 IN A %s\n", name, name, z, name, z, addr)
		names = append(names, name)
	}
	for i := 0; i < s.Servers-private; i++ {
		name := fmt.Sprintf("pub-%05d", i)
		fmt.Fprintf(&topo, "  - {name: %s, region: r%d, access: public, backends: {primary: \"127.0.0.1:5432\"}, firewallRules: [{name: office, startIpAddress: 203.0.113.%d, endIpAddress: 203.0.113.%d}]}\n",
			name, i%s.Regions, i%200, i%200+10)
		fmt.Fprintf(&zone, "%s 5 IN CNAME r%d.control.postgres.database.azure.com.\n", name, i%s.Regions)
		names = append(names, name)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names {
		fmt.Fprintf(&queries, "%s.postgres.database.azure.com A\n", n)
	}
	for path, text := range map[string]string{g.Topology: topo.String(), g.ZoneFile: zone.String(), g.Queries: queries.String()} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return g, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return g, nil
}
