package main

import (
	"context"
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

// routeStatus is the route status writer and what decides when it writes.
type routeStatus struct {
	// runners are the leader elector (when electing) and the writer.
	runners []interface {
		Run(ctx context.Context) error
	}
	writer *discovery.RouteStatusWriter
}

// newRouteStatus returns the route status writer of a cluster source:
// it consumes route statuses from the coalescer and writes them through gw
// while this replica leads.
func newRouteStatus(cfg leaderConfig, client kubernetes.Interface, gw gatewayclient.Interface, store *discovery.Store,
	reg prometheus.Registerer, log *slog.Logger) (*routeStatus, error) {
	var leader discovery.Leader = discovery.AlwaysLeader{}
	rs := &routeStatus{}
	if cfg.elect {
		el, err := discovery.NewLeaderElector(client, discovery.LeaderElectionConfig{Namespace: cfg.namespace, Name: cfg.id},
			reg, log.With("component", "leader-election"))
		if err != nil {
			return nil, err
		}
		leader = el
		rs.runners = append(rs.runners, el)
	}
	w, err := discovery.NewRouteStatusWriter(gw, store, leader, discovery.RouteStatusWriterOptions{
		Registerer: reg, Logger: log.With("component", "route-status"),
	})
	if err != nil {
		return nil, fmt.Errorf("route status: %w", err)
	}
	rs.writer = w
	rs.runners = append(rs.runners, w)
	return rs, nil
}
