package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/sluice-mesh/sluice/discovery"
)

// leaderConfig configures leader election, which decides the one replica
// that writes route status; every replica serves xDS.
type leaderConfig struct {
	elect     bool
	namespace string
	id        string
}

func (c *leaderConfig) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.elect, "leader-elect", true, "elect one replica (through a Lease) to write route status; off, this replica always writes. Every replica serves xDS. Not used with --config-dir")
	fs.StringVar(&c.namespace, "leader-election-namespace", discovery.LeaderElectionNamespace(), "namespace of the leader election Lease ($POD_NAMESPACE when set)")
	fs.StringVar(&c.id, "leader-election-id", discovery.DefaultLeaderElectionID, "name of the leader election Lease")
}

// newLeader returns what decides whether this replica writes to the API
// server (route status, CA rotations): a Lease-based elector to run, or, with
// election off, a replica that always leads (and no runner).
func newLeader(cfg leaderConfig, client kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) (discovery.Leader, runner, error) {
	if !cfg.elect {
		return discovery.AlwaysLeader{}, nil, nil
	}
	el, err := discovery.NewLeaderElector(client, discovery.LeaderElectionConfig{Namespace: cfg.namespace, Name: cfg.id},
		reg, log.With("component", "leader-election"))
	if err != nil {
		return nil, nil, fmt.Errorf("leader election: %w", err)
	}
	return el, el, nil
}

// newRouteStatusWriter returns the route status writer of a cluster source:
// it consumes route statuses from the coalescer and writes them through gw
// while this replica leads.
func newRouteStatusWriter(leader discovery.Leader, gw gatewayclient.Interface, store *discovery.Store,
	reg prometheus.Registerer, log *slog.Logger) (*discovery.RouteStatusWriter, error) {
	w, err := discovery.NewRouteStatusWriter(gw, store, leader, discovery.RouteStatusWriterOptions{
		Registerer: reg, Logger: log.With("component", "route-status"),
	})
	if err != nil {
		return nil, fmt.Errorf("route status: %w", err)
	}
	return w, nil
}
