// Command testcluster runs Sluice's test cluster (etcd, kube-apiserver,
// kube-controller-manager and the test kubelet with nodes node-a/zone-a and
// node-b/zone-b) in the foreground for manual use, inside a private network
// namespace, until interrupted. `make cluster` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-mesh/sluice/test/cluster"
)

func main() {
	os.Exit(cluster.RunInNetNS(func() int { return run(os.Args[1:], os.Stdout, os.Stderr) }))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testcluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "keep the cluster's data, credentials, kubeconfig and logs in this directory (default: a temporary directory removed on exit)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: testcluster [--dir DIR]\n\n"+
			"Runs Sluice's test cluster in a private network namespace until Ctrl-C, and\n"+
			"prints how to run sluice and kubectl against it from inside that namespace.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	c, err := cluster.Start(ctx, cluster.Options{Dir: *dir})
	if err != nil {
		fmt.Fprintf(stderr, "testcluster: %v\n", err)
		return 1
	}
	pid := os.Getpid()
	enter := cluster.NSEnterCommand()
	fmt.Fprintf(stdout, `Test cluster up in %v (Kubernetes v1.37.2; nodes node-a/zone-a, node-b/zone-b).

  kubeconfig:          %s
  logs:                %s/logs
  network namespace:   of pid %d; pods get addresses in %s, reachable only inside it

Run commands inside the namespace, e.g. from the repository root:

  %s bin/sluice serve --kubeconfig %s
  %s kubectl --kubeconfig %s get nodes,pods -A

Press Ctrl-C to stop the cluster.
`, c.StartupDuration.Round(time.Millisecond), c.Kubeconfig, c.Dir, pid, cluster.PodNetworkCIDR, enter, c.Kubeconfig, enter, c.Kubeconfig)

	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping the test cluster…")
	if err := c.Stop(); err != nil {
		fmt.Fprintf(stderr, "testcluster: stop: %v\n", err)
		return 1
	}
	return 0
}
