// Command client is a proxyless gRPC client: it resolves an xds:/// target
// through Sluice (bootstrap from $GRPC_XDS_BOOTSTRAP, see
// `sluice bootstrap --kind grpc`), sends RPCs and prints how many each
// backend pod answered.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers

	"github.com/sluice-mesh/sluice/test/backend"
)

func main() {
	target := flag.String("target", "xds:///greeter.demo:50051", "the xDS target to dial")
	rpcs := flag.Int("rpcs", 300, "how many RPCs to send")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()
	if os.Getenv("GRPC_XDS_BOOTSTRAP") == "" && os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
		fmt.Fprintln(os.Stderr, "client: set GRPC_XDS_BOOTSTRAP to a file written by `sluice bootstrap --kind grpc`")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	defer cc.Close()
	counts := map[string]int{}
	for range *rpcs {
		id, err := backend.WhoGRPC(ctx, cc, grpc.WaitForReady(true))
		if err != nil {
			fmt.Fprintln(os.Stderr, "client: RPC failed:", err)
			os.Exit(1)
		}
		counts[id.Pod+" ("+id.Zone+")"]++
	}
	pods := make([]string, 0, len(counts))
	for p := range counts {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	for _, p := range pods {
		fmt.Printf("%-20s %4d RPCs (%.0f%%)\n", p, counts[p], 100*float64(counts[p])/float64(*rpcs))
	}
}
