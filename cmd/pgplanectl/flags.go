package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlagSet makes a command's flag set whose help reads as az's does:
// the command, what it does, and its flags with two dashes.
func newFlagSet(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(fs.Output(), fs, name, help) }
	return fs
}

// printHelp prints a command's help.
func printHelp(w io.Writer, fs *flag.FlagSet, name, help string) {
	fmt.Fprintf(w, "pgplanectl %s: %s\n\nFlags:\n", name, help)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + strings.ToUpper(arg)
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parseFlags parses a command's flags. It reports done with the exit code
// when the command must not run: 0 after -h or --help (the help goes to
// stdout), 2 after a usage error (the message goes to stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(out)
		return 0, true
	case err != nil:
		fmt.Fprintf(out, "pgplanectl %s: %v\n", fs.Name(), err)
		fmt.Fprintf(out, "run `pgplanectl %s --help` for its flags\n", fs.Name())
		return 2, true
	}
	return 0, false
}

// globalFlags are the flags every API command takes; they may come before
// the command too (`pgplanectl --endpoint URL firewall-rule list ...`).
var globalFlags = []string{"endpoint", "token", "output", "query", "cacert"}

// liftGlobalFlags moves global flags given before the command to after its
// words, where the command's flag set reads them.
func liftGlobalFlags(args []string) []string {
	var globals []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		known := false
		for _, g := range globalFlags {
			known = known || g == name
		}
		switch {
		case !known:
			return append(globals, args...) // let the command report it
		case hasValue:
			globals, args = append(globals, args[0]), args[1:]
		case len(args) >= 2:
			globals, args = append(globals, args[0], args[1]), args[2:]
		default:
			return append(globals, args...)
		}
	}
	words := 0
	for words < len(args) && !strings.HasPrefix(args[words], "-") {
		words++
	}
	out := append([]string{}, args[:words]...)
	out = append(out, globals...)
	return append(out, args[words:]...)
}
