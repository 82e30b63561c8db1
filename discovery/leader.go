package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader says whether this replica may write to the API server. Every
// replica serves xDS; only the leader writes route status.
type Leader interface {
	IsLeader() bool
	// Subscribe registers fn to be called, from any goroutine, whenever
	// leadership is gained or lost.
	Subscribe(fn func(leading bool))
}

// AlwaysLeader is the Leader of a replica that runs alone (leader election
// off): it always leads.
type AlwaysLeader struct{}

// IsLeader returns true.
func (AlwaysLeader) IsLeader() bool { return true }

// Subscribe does nothing: leadership never changes.
func (AlwaysLeader) Subscribe(func(bool)) {}

// Leader election defaults (the flags of `sluice serve`).
const (
	DefaultLeaderElectionID        = "sluice-leader"
	DefaultLeaderElectionNamespace = "sluice-system"
	DefaultLeaseDuration           = 15 * time.Second
	DefaultRenewDeadline           = 10 * time.Second
	DefaultRetryPeriod             = 2 * time.Second
)

// LeaderElectionNamespace is the namespace of the Lease by default: the
// POD_NAMESPACE environment variable (set from the downward API), else
// DefaultLeaderElectionNamespace.
func LeaderElectionNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return DefaultLeaderElectionNamespace
}

// LeaderElectionConfig configures a LeaderElector. Zero durations take the
// defaults; an empty Identity is the hostname plus a random suffix, unique
// per process.
type LeaderElectionConfig struct {
	Namespace     string
	Name          string
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// LeaderElector consumes a coordination.k8s.io Lease and produces
// leadership: it campaigns for the Lease until ctx ends, campaigning again
// whenever it loses it, and releases it on shutdown so that another
// replica takes over at once. Metric: sluice_leader_election_is_leader
// (1 while leading).
type LeaderElector struct {
	client kubernetes.Interface
	cfg    LeaderElectionConfig
	log    *slog.Logger
	gauge  prometheus.Gauge

	mu      sync.Mutex
	leading bool
	subs    []func(bool)
}

// NewLeaderElector returns an elector for the Lease cfg.Namespace/cfg.Name,
// registering its metric with reg (nil: unregistered).
func NewLeaderElector(client kubernetes.Interface, cfg LeaderElectionConfig, reg prometheus.Registerer, log *slog.Logger) (*LeaderElector, error) {
	if cfg.Namespace == "" || cfg.Name == "" {
		return nil, fmt.Errorf("leader election: need a namespace and a lease name")
	}
	if cfg.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("leader election identity: %w", err)
		}
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix) // never fails
		cfg.Identity = host + "_" + hex.EncodeToString(suffix)
	}
	cfg.LeaseDuration = cmpOr(cfg.LeaseDuration, DefaultLeaseDuration)
	cfg.RenewDeadline = cmpOr(cfg.RenewDeadline, DefaultRenewDeadline)
	cfg.RetryPeriod = cmpOr(cfg.RetryPeriod, DefaultRetryPeriod)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &LeaderElector{
		client: client, cfg: cfg, log: log,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_leader_election_is_leader",
			Help: "1 while this replica holds the leader Lease (and writes route status), else 0.",
		}),
	}
	if reg != nil {
		if err := reg.Register(e.gauge); err != nil {
			return nil, fmt.Errorf("registering leader election metrics: %w", err)
		}
	}
	return e, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Identity is this replica's holder identity in the Lease.
func (e *LeaderElector) Identity() string { return e.cfg.Identity }

// IsLeader reports whether this replica holds the Lease now.
func (e *LeaderElector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Subscribe registers fn to be called whenever leadership changes.
func (e *LeaderElector) Subscribe(fn func(bool)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = append(e.subs, fn)
}

// set records a change of leadership, gaining it only while ctx is not
// done: client-go starts the leading callback in a goroutine that may run
// after leadership already ended.
func (e *LeaderElector) set(ctx context.Context, leading bool) {
	e.mu.Lock()
	if leading && ctx.Err() != nil || e.leading == leading {
		e.mu.Unlock()
		return
	}
	e.leading = leading
	subs := slices.Clone(e.subs)
	e.mu.Unlock()
	if leading {
		e.gauge.Set(1)
	} else {
		e.gauge.Set(0)
	}
	e.log.Info("leader election: leadership changed", "leading", leading, "identity", e.cfg.Identity,
		"lease", e.cfg.Namespace+"/"+e.cfg.Name)
	for _, fn := range subs {
		fn(leading)
	}
}

// Run campaigns for the Lease until ctx ends.
func (e *LeaderElector) Run(ctx context.Context) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, e.cfg.Namespace, e.cfg.Name,
		e.client.CoreV1(), e.client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: e.cfg.Identity})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { e.set(ctx, true) },
			OnStoppedLeading: func() { e.set(context.Background(), false) },
			OnNewLeader: func(id string) {
				e.log.Info("leader election: leader observed", "leader", id, "lease", e.cfg.Namespace+"/"+e.cfg.Name)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	e.gauge.Set(0)
	for ctx.Err() == nil {
		le.Run(ctx) // returns when ctx ends or the Lease is lost
		select {
		case <-ctx.Done():
		case <-time.After(e.cfg.RetryPeriod):
		}
	}
	return nil
}
