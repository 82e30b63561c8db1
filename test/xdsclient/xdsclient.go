// Package xdsclient dials services through Sluice with grpc-go's own xDS
// resolver and balancers (proxyless gRPC), for tests: every client gets its
// own resolver built from its own bootstrap, so tests can run clients of
// several identities and zones in one process.
package xdsclient

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/test/backend"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

// Dial returns a client connection to target (e.g. "xds:///api.default:9090")
// resolved by grpc-go's xDS resolver against the control plane in w.XDSAddress,
// with w's node identity.
func Dial(w bootstrap.Workload, target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	cfg, err := bootstrap.GRPC(w)
	if err != nil {
		return nil, err
	}
	builder, err := xds.NewXDSResolverWithConfigForTesting(cfg)
	if err != nil {
		return nil, fmt.Errorf("xDS resolver: %w", err)
	}
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(builder),
	}, opts...)
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return cc, nil
}

// Counts is how many RPCs each backend pod answered.
type Counts map[string]int

// Total is the number of RPCs counted.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// String lists the pods in order with their counts.
func (c Counts) String() string {
	pods := make([]string, 0, len(c))
	for p := range c {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s=%d ", p, c[p])
	}
	return strings.TrimSpace(b.String())
}

// Spread sends n RPCs on cc and counts which pod answered each. It stops at
// the first failed RPC and returns what it counted with the error.
func Spread(ctx context.Context, cc *grpc.ClientConn, n int, opts ...grpc.CallOption) (Counts, error) {
	counts := Counts{}
	for i := range n {
		id, err := backend.WhoGRPC(ctx, cc, opts...)
		if err != nil {
			return counts, fmt.Errorf("RPC %d of %d: %w", i+1, n, err)
		}
		counts[id.Pod]++
	}
	return counts, nil
}
