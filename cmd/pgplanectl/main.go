// Command pgplanectl is pgplane's operator tool. Its nouns and flags follow
// `az postgres flexible-server` and `az network private-dns`.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pgplane/pgplane/gateway"
	"github.com/pgplane/pgplane/topology"
)

const usageHead = `pgplanectl: the pgplane operator tool

Usage:
  pgplanectl validate --topology FILE   check a topology file; print every error with its rule ID
  pgplanectl validate --corefile FILE   check a Corefile, its topology, keys and certificates, without starting
  pgplanectl certs create --dir DIR [--topology FILE] [--names N,...]
                                        make a CA (once) and the gateway's certificate for the service's names
  pgplanectl cluster-key                print a new gossip encryption key (base64 of 32 random bytes)
  pgplanectl cluster show               members, votes, active addresses and failovers
  pgplanectl health                     this node's own state: topology, gateway, cluster, run-time changes
  pgplanectl completion bash            print a bash completion script
`

const usageTail = `
create, update, show, list and delete alone mean "server ..." (az postgres flexible-server).
Run a command with -h for its flags.

API commands take --endpoint (PGPLANE_ENDPOINT, default http://127.0.0.1:8530),
--token (PGPLANE_TOKEN), --output table|json|yaml|tsv|none and --query (JMESPath, as az's),
before or after the command.
Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage error.
`

// usage lists every command.
func usage() string {
	var b strings.Builder
	b.WriteString(usageHead)
	for _, name := range commandNames() {
		fmt.Fprintf(&b, "  pgplanectl %-29s %s\n", name, commands[name].help)
	}
	b.WriteString(usageTail)
	return b.String()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit code: 0 success,
// 1 the input breaks a rule, 2 a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	args = liftGlobalFlags(args)
	switch args[0] {
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "certs":
		if len(args) > 1 && args[1] == "create" {
			return certsCreate(args[2:], stdout, stderr)
		}
	case "cluster-key":
		fs := newFlagSet("cluster-key", "print a new gossip encryption key (base64 of 32 random bytes) for cluster_key_file", stderr)
		if code, done := parseFlags(fs, args[1:], stdout); done {
			return code
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			fmt.Fprintln(stderr, "pgplanectl cluster-key:", err)
			return 1
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
		return 0
	case "health":
		return health(args[1:], stdout, stderr)
	case "cluster":
		if len(args) > 1 && args[1] == "show" {
			return clusterShow(args[2:], stdout, stderr)
		}
	case "completion":
		if len(args) == 2 && args[1] == "bash" {
			fmt.Fprint(stdout, bashCompletion())
			return 0
		}
		fmt.Fprintln(stderr, "pgplanectl completion: want `pgplanectl completion bash`")
		return 2
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	}
	if name, rest, ok := findCommand(args); ok {
		return runResource(name, rest, os.Stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "pgplanectl: unknown command %q\n\n%s", strings.Join(args[:min(2, len(args))], " "), usage())
	return 2
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "check a topology file, or a Corefile with its topology, keys and certificates, without starting", stderr)
	file := fs.String("topology", "", "topology `file` to check")
	corefile := fs.String("corefile", "", "Corefile to check, with the topology and the files its pgplane blocks name")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	switch {
	case *corefile != "":
		problems, summary := checkCorefile(*corefile)
		for _, line := range summary {
			fmt.Fprintln(stdout, line)
		}
		for _, p := range problems {
			fmt.Fprintln(stderr, p)
		}
		if len(problems) > 0 {
			fmt.Fprintf(stderr, "%s: %d errors\n", *corefile, len(problems))
			return 1
		}
		fmt.Fprintf(stdout, "%s: valid\n", *corefile)
		return 0
	case *file == "":
		fmt.Fprintln(stderr, "pgplanectl validate: --topology FILE or --corefile FILE is required")
		return 2
	}
	t, warnings, err := topology.Load(*file)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w.Error())
	}
	var vs topology.Violations
	switch {
	case errors.As(err, &vs):
		fmt.Fprintln(stderr, vs.Error())
		fmt.Fprintf(stderr, "%s: %d errors\n", *file, len(vs))
		return 1
	case err != nil:
		fmt.Fprintln(stderr, "pgplanectl validate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid: %d regions, %d vnets, %d private DNS zones, %d servers\n",
		*file, len(t.Regions), len(t.VNets), len(t.PrivateDNSZones), t.Servers.Len())
	return 0
}

// certsCreate makes (or reuses) a CA in a directory and issues the
// gateway's certificate for the names clients connect by.
func certsCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("certs create", "make a CA (once) and the gateway's certificate for the service's names", stderr)
	dir := fs.String("dir", "", "directory for ca.crt, ca.key, server.crt and server.key")
	file := fs.String("topology", "", "topology `file`: the certificate covers its private zones")
	extra := fs.String("names", "", "more DNS `names`, comma separated")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "pgplanectl certs create: --dir is required")
		return 2
	}
	names := []string{"*." + topology.Apex}
	if *file != "" {
		t, _, err := topology.Load(*file)
		if err != nil {
			fmt.Fprintf(stderr, "pgplanectl certs create: %v\n", err)
			return 1
		}
		names = topology.CertificateNames(t)
	}
	for _, n := range strings.Split(*extra, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n) // each name once in the certificate
		}
	}
	if _, ca, err := gateway.DevCertificates(*dir, names); err != nil {
		fmt.Fprintf(stderr, "pgplanectl certs create: %v\n", err)
		return 1
	} else {
		cert, key := filepath.Join(*dir, gateway.DevCertFile), filepath.Join(*dir, gateway.DevKeyFile)
		fmt.Fprintf(stdout, "CA:          %s (give it to clients as sslrootcert; keep ca.key offline)\n", ca)
		fmt.Fprintf(stdout, "certificate: %s for %s\n", cert, strings.Join(names, " "))
		fmt.Fprintf(stdout, "Corefile:    gateway_tls %s %s\n", cert, key)
	}
	return 0
}
