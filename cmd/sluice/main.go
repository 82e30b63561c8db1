// Command sluice is the Sluice service-mesh control plane and its helpers.
//
// main only wires: each subcommand parses its flags into a config struct and
// starts the components that config names.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
