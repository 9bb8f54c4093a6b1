package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/pgplane/pgplane/api"
	"github.com/pgplane/pgplane/topology"
)

// command is one resource command: its flags, the request it sends and the
// table it prints.
type command struct {
	help string
	// flags lists the flags: name, then help. A help beginning with "*"
	// marks a required flag.
	flags [][2]string
	// switches are boolean flags (name, help); a set one is "true" in flags.
	switches [][2]string
	// request turns the flags into a call. It may call the API itself
	// first (an update reads the object it changes).
	request func(c *common, f flags) (method, path string, body any, err error)
	// ifNoneMatch makes the call a create that fails on an existing object.
	ifNoneMatch bool
	// print prints the answer as a table; nil prints nothing.
	print func(w io.Writer, answer json.RawMessage) error
	// done is printed after a call with no answer to print.
	done func(f flags) string
	// confirm, when set, is the question a destructive command asks; --yes
	// answers it, and without a terminal to ask on it must.
	confirm func(f flags) string
}

// flags are a command's parsed flag values, by name.
type flags map[string]string

func (f flags) has(name string) bool { return f[name] != "" }

// commands are the resource commands, by "noun verb".
var commands = map[string]command{
	"server create": {
		help: "create a server; --vnet and --subnet make it private",
		flags: [][2]string{{"name", "*server name"}, {"location", "*region"}, {"backend", "*primary backend host:port"},
			{"standby-backend", "standby backend host:port (high availability)"}, {"high-availability", "Enabled or Disabled (default)"},
			{"vnet", "VNet of a private server"}, {"subnet", "subnet of a private server"}, {"private-dns-zone", "private DNS zone of a private server"},
			{"address", "private address DNS gives out"}, {"standby-address", "private address of the standby"},
			{"require-secure-transport", "on or off"}, {"ssl-min-protocol-version", "TLSv1.2 or TLSv1.3..."}},
		request: func(c *common, f flags) (string, string, any, error) {
			s, err := serverFromFlags(topology.Server{Name: f["name"], Region: f["location"], Access: topology.AccessPublic}, f)
			return http.MethodPut, "/v1/servers/" + pathEscape(f["name"]), s, err
		},
		ifNoneMatch: true,
		print:       printOne[topology.Server](serverTable),
	},
	"server update": {
		help: "change a server's settings",
		flags: [][2]string{{"name", "*server name"}, {"backend", "primary backend host:port"}, {"standby-backend", "standby backend host:port"},
			{"high-availability", "Enabled or Disabled"}, {"vnet", "VNet (a server cannot move: refused)"}, {"subnet", "subnet (a server cannot move: refused)"},
			{"private-dns-zone", "private DNS zone"}, {"address", "private address"},
			{"standby-address", "standby private address"}},
		request: func(c *common, f flags) (string, string, any, error) {
			var s topology.Server
			if err := c.call(http.MethodGet, "/v1/servers/"+pathEscape(f["name"]), nil, &s); err != nil {
				return "", "", nil, err
			}
			s.FirewallRules, s.Parameters = nil, nil
			s, err := serverFromFlags(s, f)
			return http.MethodPut, "/v1/servers/" + pathEscape(f["name"]), s, err
		},
		print: printOne[topology.Server](serverTable),
	},
	"server show": {
		help: "show a server", flags: [][2]string{{"name", "*server name"}},
		request: get(func(f flags) string { return "/v1/servers/" + pathEscape(f["name"]) }),
		print:   printOne[topology.Server](serverTable),
	},
	"server list": {
		help: "list the servers", request: get(func(flags) string { return "/v1/servers" }),
		print: printList(serverTable),
	},
	"server delete": {
		help: "delete a server with its firewall rules and parameters", flags: [][2]string{{"name", "*server name"}},
		request: del(func(f flags) string { return "/v1/servers/" + pathEscape(f["name"]) }),
		done:    func(f flags) string { return fmt.Sprintf("server %s deleted", f["name"]) },
		confirm: func(f flags) string {
			return fmt.Sprintf("Delete server %s with its firewall rules and parameters, on every node?", f["name"])
		},
	},
	"firewall-rule create": {
		help:    "create a firewall rule of a public server",
		flags:   ruleFlags,
		request: putRule, ifNoneMatch: true,
		print: printOne[topology.FirewallRule](ruleTable),
	},
	"firewall-rule update": {
		help: "change a firewall rule's addresses", flags: ruleFlags, request: putRule,
		print: printOne[topology.FirewallRule](ruleTable),
	},
	"firewall-rule list": {
		help: "list a server's firewall rules", flags: [][2]string{{"server", "*server name"}},
		request: get(func(f flags) string { return "/v1/servers/" + pathEscape(f["server"]) + "/firewall-rules" }),
		print:   printList(ruleTable),
	},
	"firewall-rule show": {
		help: "show a firewall rule", flags: [][2]string{{"server", "*server name"}, {"name", "*rule name"}},
		request: get(func(f flags) string { return ruleURL(f) }),
		print:   printOne[topology.FirewallRule](ruleTable),
	},
	"firewall-rule delete": {
		help: "delete a firewall rule", flags: [][2]string{{"server", "*server name"}, {"name", "*rule name"}},
		request: del(ruleURL),
		done: func(f flags) string {
			return fmt.Sprintf("firewall rule %s of server %s deleted", f["name"], f["server"])
		},
	},
	"parameter set": {
		help:  "set a server parameter",
		flags: [][2]string{{"server", "*server name"}, {"name", "*parameter name"}, {"value", "*value"}},
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodPut, paramURL(f), api.ParameterValue{Value: f["value"]}, nil
		},
		print: printOne[api.Parameter](paramTable),
	},
	"parameter reset": {
		help:  "put a server parameter back to its default",
		flags: [][2]string{{"server", "*server name"}, {"name", "*parameter name"}},
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodDelete, paramURL(f), nil, nil
		},
		print: printOne[api.Parameter](paramTable),
	},
	"parameter show": {
		help: "show a server parameter", flags: [][2]string{{"server", "*server name"}, {"name", "*parameter name"}},
		request: get(paramURL), print: printOne[api.Parameter](paramTable),
	},
	"parameter list": {
		help: "list a server's parameters", flags: [][2]string{{"server", "*server name"}},
		request: get(func(f flags) string { return "/v1/servers/" + pathEscape(f["server"]) + "/parameters" }),
		print:   printList(paramTable),
	},
	"private-dns zone create": {
		help: "create a private DNS zone", flags: [][2]string{{"name", "*zone name"}, {"lock", "none, CanNotDelete or ReadOnly"}},
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodPut, zoneURL(f["name"]), topology.PrivateDNSZone{Lock: f["lock"]}, nil
		},
		ifNoneMatch: true,
		print:       printOne[api.ZoneView](zoneTable),
	},
	"private-dns zone update": {
		help: "change a private DNS zone's lock", flags: [][2]string{{"name", "*zone name"}, {"lock", "*none, CanNotDelete or ReadOnly"}},
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodPut, zoneURL(f["name"]), topology.PrivateDNSZone{Lock: f["lock"]}, nil
		},
		print: printOne[api.ZoneView](zoneTable),
	},
	"private-dns zone show": {
		help: "show a private DNS zone and its records", flags: [][2]string{{"name", "*zone name"}},
		request: get(func(f flags) string { return zoneURL(f["name"]) }), print: printOne[api.ZoneView](zoneTable),
	},
	"private-dns zone list": {
		help: "list the private DNS zones", request: get(func(flags) string { return "/v1/private-dns-zones" }),
		print: printList(zoneTable),
	},
	"private-dns zone delete": {
		help: "delete a private DNS zone", flags: [][2]string{{"name", "*zone name"}},
		request: del(func(f flags) string { return zoneURL(f["name"]) }),
		done:    func(f flags) string { return fmt.Sprintf("private DNS zone %s deleted", f["name"]) },
		confirm: func(f flags) string {
			return fmt.Sprintf("Delete private DNS zone %s with its links, on every node?", f["name"])
		},
	},
	"private-dns link vnet create": {
		help: "link a private DNS zone to a VNet (the link is named after the VNet)", flags: linkFlags,
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodPut, linkURL(f), nil, nil
		},
		print: printOne[api.ZoneView](zoneTable),
	},
	"private-dns link vnet delete": {
		help: "remove a private DNS zone's link to a VNet", flags: linkFlags,
		request: del(linkURL),
		done:    func(f flags) string { return fmt.Sprintf("link of %s to vnet %s deleted", f["zone-name"], linkVNet(f)) },
	},
	"vnet create": {
		help: "create a VNet",
		flags: [][2]string{{"name", "*VNet name"}, {"location", "*region"}, {"address-prefixes", "*address spaces, comma separated"},
			{"resolver-address", "inbound resolver address of the VNet"}, {"dns-servers", "custom DNS servers, comma separated"}},
		request: func(c *common, f flags) (string, string, any, error) {
			vn := topology.VNet{Region: f["location"], AddressSpaces: splitList(f["address-prefixes"]), ResolverAddress: f["resolver-address"], DNSServers: splitList(f["dns-servers"])}
			return http.MethodPut, "/v1/vnets/" + pathEscape(f["name"]), vn, nil
		},
		ifNoneMatch: true,
		print:       printOne[topology.VNet](vnetTable),
	},
	"vnet show": {
		help: "show a VNet", flags: [][2]string{{"name", "*VNet name"}},
		request: get(func(f flags) string { return "/v1/vnets/" + pathEscape(f["name"]) }), print: printOne[topology.VNet](vnetTable),
	},
	"vnet list": {
		help: "list the VNets", request: get(func(flags) string { return "/v1/vnets" }), print: printList(vnetTable),
	},
	"vnet delete": {
		help: "delete a VNet with its subnets and peerings", flags: [][2]string{{"name", "*VNet name"}},
		request: del(func(f flags) string { return "/v1/vnets/" + pathEscape(f["name"]) }),
		done:    func(f flags) string { return fmt.Sprintf("vnet %s deleted", f["name"]) },
		confirm: func(f flags) string {
			return fmt.Sprintf("Delete vnet %s with its subnets, peerings and zone links, on every node?", f["name"])
		},
	},
	"vnet subnet create": {
		help: "create a subnet",
		flags: [][2]string{{"vnet-name", "*VNet name"}, {"name", "*subnet name"}, {"address-prefixes", "*the subnet's CIDR"},
			{"delegations", "Microsoft.DBforPostgreSQL/flexibleServers for flexible servers"}},
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodPut, subnetURL(f), topology.Subnet{CIDR: f["address-prefixes"], Delegation: f["delegations"]}, nil
		},
		ifNoneMatch: true,
		print:       printOne[topology.Subnet](subnetTable),
	},
	"vnet subnet delete": {
		help: "delete a subnet", flags: [][2]string{{"vnet-name", "*VNet name"}, {"name", "*subnet name"}},
		request: del(subnetURL),
		done:    func(f flags) string { return fmt.Sprintf("subnet %s of vnet %s deleted", f["name"], f["vnet-name"]) },
	},
	"vnet peering create": {
		help: "peer two VNets", flags: [][2]string{{"vnet-name", "*VNet name"}, {"remote-vnet", "*the other VNet"}, {"name", "peering name (informational)"}},
		request: func(c *common, f flags) (string, string, any, error) {
			return http.MethodPut, peeringURL(f), nil, nil
		},
		print: printOne[topology.VNet](vnetTable),
	},
	"vnet peering delete": {
		help: "remove a peering from both VNets", flags: [][2]string{{"vnet-name", "*VNet name"}, {"remote-vnet", "*the other VNet"}, {"name", "peering name (informational)"}},
		request: del(peeringURL),
		done: func(f flags) string {
			return fmt.Sprintf("peering of %s and %s deleted", f["vnet-name"], f["remote-vnet"])
		},
	},
}

// moves are the failover and failback commands: POST to the server's or
// region's route, printing the decision made.
func init() {
	for _, m := range []struct{ noun, verb, help string }{
		{"server", "failover", "move an HA server to its standby"},
		{"server", "failback", "move an HA server back to its primary"},
		{"region", "failover", "activate another gateway address of a region (--to, default the next)"},
		{"region", "failback", "activate the region's primary gateway address"},
	} {
		c := command{help: m.help, flags: [][2]string{{"name", "*the " + m.noun + "'s name"}}, print: printDecision}
		if m.noun == "region" && m.verb == "failover" {
			c.flags = append(c.flags, [2]string{"to", "the gateway address to activate (default: the next one)"})
		}
		if m.noun == "server" {
			c.switches = [][2]string{{"accept-split-brain", "route to a fenced backend that went down as the primary after a failover; the writes made on the other backend since then are lost to clients"}}
		}
		c.request = func(_ *common, f flags) (string, string, any, error) {
			var body any
			switch {
			case f.has("to"):
				body = api.RegionMove{To: f["to"]}
			case f.has("accept-split-brain"):
				body = api.ServerMove{AcceptSplitBrain: true}
			}
			return http.MethodPost, "/v1/" + m.noun + "s/" + pathEscape(f["name"]) + "/" + m.verb, body, nil
		}
		commands[m.noun+" "+m.verb] = c
	}
}

// printDecision prints a failover decision: its key and why.
func printDecision(w io.Writer, b json.RawMessage) error {
	var d struct{ Key, Reason string }
	if err := json.Unmarshal(b, &d); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %s\n", d.Key, d.Reason)
	return nil
}

// Command aliases: `az postgres flexible-server create` is `pgplanectl create`.
var aliases = map[string]string{"create": "server create", "update": "server update", "show": "server show", "list": "server list", "delete": "server delete"}

var ruleFlags = [][2]string{{"server", "*server name"}, {"name", "*rule name"}, {"start-ip-address", "*first IPv4 address"}, {"end-ip-address", "*last IPv4 address"}}

var linkFlags = [][2]string{{"zone-name", "*zone name"}, {"name", "*the VNet (a link is named after its VNet)"}, {"virtual-network", "the VNet, if not --name"}}

func putRule(c *common, f flags) (string, string, any, error) {
	return http.MethodPut, ruleURL(f), topology.FirewallRule{StartIPAddress: f["start-ip-address"], EndIPAddress: f["end-ip-address"]}, nil
}

func pathEscape(s string) string { return url.PathEscape(s) }

func ruleURL(f flags) string {
	return "/v1/servers/" + pathEscape(f["server"]) + "/firewall-rules/" + pathEscape(f["name"])
}

func paramURL(f flags) string {
	return "/v1/servers/" + pathEscape(f["server"]) + "/parameters/" + pathEscape(f["name"])
}

func zoneURL(name string) string { return "/v1/private-dns-zones/" + pathEscape(name) }

func linkVNet(f flags) string {
	if f.has("virtual-network") {
		return f["virtual-network"]
	}
	return f["name"]
}

func linkURL(f flags) string { return zoneURL(f["zone-name"]) + "/links/" + pathEscape(linkVNet(f)) }

func subnetURL(f flags) string {
	return "/v1/vnets/" + pathEscape(f["vnet-name"]) + "/subnets/" + pathEscape(f["name"])
}

func peeringURL(f flags) string {
	return "/v1/vnets/" + pathEscape(f["vnet-name"]) + "/peerings/" + pathEscape(f["remote-vnet"])
}

func get(path func(flags) string) func(*common, flags) (string, string, any, error) {
	return func(_ *common, f flags) (string, string, any, error) { return http.MethodGet, path(f), nil, nil }
}

func del(path func(flags) string) func(*common, flags) (string, string, any, error) {
	return func(_ *common, f flags) (string, string, any, error) { return http.MethodDelete, path(f), nil, nil }
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// serverFromFlags applies the server flags to s.
func serverFromFlags(s topology.Server, f flags) (topology.Server, error) {
	if f.has("backend") {
		s.Backends.Primary = f["backend"]
	}
	if f.has("standby-backend") {
		s.Backends.Standby = f["standby-backend"]
	}
	switch strings.ToLower(f["high-availability"]) {
	case "":
	case "enabled", "zoneredundant", "samezone":
		s.HighAvailability = true
	case "disabled":
		// Like Azure: no high availability, no standby.
		s.HighAvailability = false
		s.Backends.Standby = ""
		if s.Addresses != nil {
			a := *s.Addresses
			a.Standby = ""
			s.Addresses = &a
		}
	default:
		return s, fmt.Errorf("--high-availability %q: want Enabled or Disabled", f["high-availability"])
	}
	if f.has("vnet") || f.has("subnet") {
		s.Access = topology.AccessPrivate
		s.Network = &topology.Network{VNet: f["vnet"], Subnet: f["subnet"], PrivateDNSZone: f["private-dns-zone"]}
	} else if f.has("private-dns-zone") && s.Network != nil {
		n := *s.Network
		n.PrivateDNSZone = f["private-dns-zone"]
		s.Network = &n
	}
	if f.has("address") || f.has("standby-address") {
		a := topology.Addresses{}
		if s.Addresses != nil {
			a = *s.Addresses
		}
		if f.has("address") {
			a.Primary = f["address"]
		}
		if f.has("standby-address") {
			a.Standby = f["standby-address"]
		}
		s.Addresses = &a
	}
	for flag, param := range map[string]string{"require-secure-transport": topology.ParamRequireSecureTransport, "ssl-min-protocol-version": topology.ParamSSLMinProtocolVersion} {
		if f.has(flag) {
			if s.Parameters == nil {
				s.Parameters = map[string]string{}
			}
			s.Parameters[param] = f[flag]
		}
	}
	return s, nil
}

// printOne decodes one object and prints it as a one-row table.
func printOne[T any](table func(w io.Writer, rows []T)) func(io.Writer, json.RawMessage) error {
	return func(w io.Writer, b json.RawMessage) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		table(w, []T{v})
		return nil
	}
}

// printList decodes a list and prints it as a table.
func printList[T any](table func(w io.Writer, rows []T)) func(io.Writer, json.RawMessage) error {
	return func(w io.Writer, b json.RawMessage) error {
		var v []T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		table(w, v)
		return nil
	}
}

func tableWriter(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func serverTable(w io.Writer, rows []topology.Server) {
	tw := tableWriter(w, "NAME\tLOCATION\tACCESS\tHA\tADDRESS\tBACKEND\tSTANDBY BACKEND\tRULES")
	for _, s := range rows {
		addr, ha := "-", "Disabled"
		if s.Addresses != nil {
			addr = s.Addresses.Primary
		}
		if s.HighAvailability {
			ha = "Enabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.Name, s.Region, s.Access, ha, addr, s.Backends.Primary, orDash(s.Backends.Standby), len(s.FirewallRules))
	}
	tw.Flush()
}

func ruleTable(w io.Writer, rows []topology.FirewallRule) {
	tw := tableWriter(w, "NAME\tSTART IP ADDRESS\tEND IP ADDRESS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.StartIPAddress, r.EndIPAddress)
	}
	tw.Flush()
}

func paramTable(w io.Writer, rows []api.Parameter) {
	tw := tableWriter(w, "NAME\tVALUE\tDEFAULT\tSOURCE")
	for _, p := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, orDash(p.Value), orDash(p.DefaultValue), p.Source)
	}
	tw.Flush()
}

func zoneTable(w io.Writer, rows []api.ZoneView) {
	tw := tableWriter(w, "NAME\tLOCK\tLINKED VNETS\tRECORDS")
	for _, z := range rows {
		var recs []string
		for _, r := range z.Records {
			recs = append(recs, r.Name+"="+r.Address)
		}
		lock := z.Lock
		if lock == "" {
			lock = topology.LockNone
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", z.Name, lock, orDash(strings.Join(z.Links, ",")), orDash(strings.Join(recs, ",")))
	}
	tw.Flush()
}

func vnetTable(w io.Writer, rows []topology.VNet) {
	tw := tableWriter(w, "NAME\tLOCATION\tADDRESS PREFIXES\tSUBNETS\tPEERINGS")
	for _, v := range rows {
		var subnets []string
		for _, s := range v.Subnets {
			subnets = append(subnets, s.Name+"="+s.CIDR)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Region, strings.Join(v.AddressSpaces, ","), orDash(strings.Join(subnets, ",")), orDash(strings.Join(v.Peerings, ",")))
	}
	tw.Flush()
}

func subnetTable(w io.Writer, rows []topology.Subnet) {
	tw := tableWriter(w, "NAME\tADDRESS PREFIX\tDELEGATION")
	for _, s := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.CIDR, orDash(s.Delegation))
	}
	tw.Flush()
}

// findCommand finds the command args begin with; it returns its name and the
// remaining arguments.
func findCommand(args []string) (string, []string, bool) {
	if len(args) > 0 {
		if full, ok := aliases[args[0]]; ok {
			return full, args[1:], true
		}
	}
	for n := min(4, len(args)); n >= 1; n-- {
		name := strings.Join(args[:n], " ")
		if _, ok := commands[name]; ok {
			return name, args[n:], true
		}
	}
	return "", nil, false
}

// runResource runs a resource command.
func runResource(name string, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	cmd := commands[name]
	fs := newFlagSet(name, cmd.help, stderr)
	var c common
	c.register(fs)
	values := map[string]*string{}
	for _, fl := range cmd.flags {
		values[fl[0]] = fs.String(fl[0], "", strings.TrimPrefix(fl[1], "*"))
	}
	if strings.HasPrefix(name, "parameter ") {
		// az spells it --server-name.
		fs.StringVar(values["server"], "server-name", "", "server name (as --server)")
	}
	switches := map[string]*bool{}
	for _, sw := range cmd.switches {
		switches[sw[0]] = fs.Bool(sw[0], false, sw[1])
	}
	yes := false
	if cmd.confirm != nil {
		fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
		fs.BoolVar(&yes, "y", false, "do not ask for confirmation (as --yes)")
	}
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgplanectl %s: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	f := flags{}
	for k, v := range values {
		f[k] = *v
	}
	for k, v := range switches {
		if *v {
			f[k] = "true"
		}
	}
	for _, fl := range cmd.flags {
		if strings.HasPrefix(fl[1], "*") && !f.has(fl[0]) && !(fl[0] == "name" && f.has("virtual-network")) {
			fmt.Fprintf(stderr, "pgplanectl %s: --%s is required (%s)\n", name, fl[0], strings.TrimPrefix(fl[1], "*"))
			return 2
		}
	}
	if err := c.checkOutput(); err != nil {
		fmt.Fprintf(stderr, "pgplanectl %s: %v\n", name, err)
		return 2
	}
	if cmd.confirm != nil && !yes {
		if !confirmed(cmd.confirm(f), stdin, stderr) {
			fmt.Fprintf(stderr, "pgplanectl %s: not confirmed; nothing changed (--yes skips the question)\n", name)
			return 2
		}
	}
	method, path, body, err := cmd.request(&c, f)
	if err != nil {
		fmt.Fprintf(stderr, "pgplanectl %s: %v\n", name, err)
		return 1
	}
	var answer json.RawMessage
	header := map[string]string{}
	if cmd.ifNoneMatch {
		header["If-None-Match"] = "*"
	}
	if err := c.callWith(method, path, body, header, &answer); err != nil {
		fmt.Fprintf(stderr, "pgplanectl %s: %v\n", name, err)
		return 1
	}
	switch {
	case len(answer) == 0 && cmd.done != nil:
		fmt.Fprintln(stdout, cmd.done(f))
	case len(answer) == 0:
	default:
		if err := c.render(stdout, answer, cmd.print); err != nil {
			fmt.Fprintf(stderr, "pgplanectl %s: %v\n", name, err)
			return 1
		}
	}
	return 0
}

// confirmed asks a question on a terminal. Without one (a script, a pipe)
// it answers no: such callers say --yes.
func confirmed(question string, in *os.File, out io.Writer) bool {
	if in == nil {
		return false
	}
	if fi, err := in.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	fmt.Fprintf(out, "%s (y/N): ", question)
	var answer string
	fmt.Fscanln(in, &answer)
	return strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes")
}

// commandNames lists the resource commands, sorted, for help and completion.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
