package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// command is one subcommand of sluice.
type command struct {
	name    string
	summary string
	// run parses args and runs the command. It returns errUsage (wrapped) when
	// the arguments were wrong, so run can print help and exit 2.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	// sub are subcommands ("sluice agent wait-drained"); run handles
	// everything else.
	sub []command
}

var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"serve", "run the control plane: watch Kubernetes (or a directory of YAML) and serve xDS", runServe, nil},
		{"agent", "run beside a workload: obtain and renew its mTLS certificate; serve it over SDS and as files", runAgent, []command{
			{"wait-drained", "preStop hook: wait until no proxy sends new requests to this pod", runWaitDrained, nil},
		}},
		{"ca", "inspect and rotate the CA: sluice ca status | rotate [--intermediate] [--wait]", runCA, nil},
		{"bootstrap", "print the bootstrap file a proxyless gRPC client or an Envoy sidecar needs to reach Sluice", runBootstrap, nil},
		{"version", "print the version of this binary", runVersion, nil},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		name, rest := c.name, args[1:]
		for _, sub := range c.sub {
			if len(rest) > 0 && rest[0] == sub.name {
				c, name, rest = sub, c.name+" "+sub.name, rest[1:]
				break
			}
		}
		err := c.run(ctx, rest, stdout, stderr)
		switch {
		case err == nil, errors.Is(err, pflag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "sluice %s: %v\nRun 'sluice %s --help' for usage.\n", name, err, name)
			return 2
		default:
			fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Sluice is a service-mesh control plane for Kubernetes: it serves xDS to Envoy sidecars and proxyless gRPC clients.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: sluice <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		for _, sub := range c.sub {
			fmt.Fprintf(w, "  %-10s %s\n", c.name+" "+sub.name, sub.summary)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'sluice <command> --help' for the flags of a command.")
}

// newFlagSet returns a flag set whose --help prints the command's description
// and flags to stdout.
func newFlagSet(name, description string, stdout io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sluice "+name, pflag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: sluice %s [flags]\n\n%s\n\nFlags:\n%s", name, strings.TrimSpace(description), fs.FlagUsages())
	}
	return fs
}

// parseFlags parses args, turning parse errors into usage errors.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}
