package discovery

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/sluice-mesh/sluice/mesh"
)

// Defaults of the coalescing delays (the flags of `sluice serve`).
const (
	// DefaultHoldOff is how long the coalescer waits after a change for
	// more changes before building.
	DefaultHoldOff = 20 * time.Millisecond
	// DefaultMaxDelay bounds how long a change may wait while changes keep
	// arriving.
	DefaultMaxDelay = 200 * time.Millisecond
)

// Update is one published snapshot.
type Update struct {
	// Version counts published snapshots, from 1.
	Version  uint64
	Snapshot *mesh.Snapshot
	// EndpointsOnly is true when only endpoints changed since the previous
	// update: Snapshot.Services is then the previous snapshot's slice, with
	// the same *mesh.Service pointers, so listeners, routes and clusters need
	// not be rebuilt. The first update is never EndpointsOnly.
	//
	// In every update, a service that did not change keeps its *mesh.Service
	// pointer, and a port whose endpoints did not change keeps its endpoint
	// slice, so consumers may cache per service or per port by identity.
	EndpointsOnly bool
	// ChangedServices are the services added, changed or removed since the
	// previous update (every service in the first); empty when EndpointsOnly.
	ChangedServices []mesh.ServiceKey
	// ChangedPorts are the ports whose endpoints were added, changed or
	// removed (every port in the first). A removed port is absent from
	// Snapshot.Endpoints.
	ChangedPorts []mesh.PortKey
	// ChangedRoutes are the ports whose routes (Snapshot.Routes) were
	// added, changed or removed; a port whose routes did not change keeps
	// its *mesh.PortRoutes. Never set when EndpointsOnly.
	ChangedRoutes []mesh.PortKey
	// Problems are all current problems, sorted.
	Problems []Problem
}

// Consumer receives published snapshots, one at a time, in order. The
// coalescer waits for OnSnapshot to return; changes arriving meanwhile are
// folded into the next update.
type Consumer interface {
	OnSnapshot(ctx context.Context, u Update)
}

// ConsumerFunc adapts a function to a Consumer.
type ConsumerFunc func(ctx context.Context, u Update)

// OnSnapshot calls f.
func (f ConsumerFunc) OnSnapshot(ctx context.Context, u Update) { f(ctx, u) }

// ProblemReporter is told the current problems after every build in which
// they changed, whether or not a snapshot was published (a bad object
// often changes nothing in the mesh).
type ProblemReporter interface {
	ReportProblems(ctx context.Context, problems []Problem)
}

// ProblemReporterFunc adapts a function to a ProblemReporter.
type ProblemReporterFunc func(ctx context.Context, problems []Problem)

// ReportProblems calls f.
func (f ProblemReporterFunc) ReportProblems(ctx context.Context, problems []Problem) {
	f(ctx, problems)
}

// CoalescerOptions configure a Coalescer. Zero values take the defaults.
type CoalescerOptions struct {
	HoldOff  time.Duration
	MaxDelay time.Duration
	// Reporters are told about problems (Kubernetes Events, logs).
	Reporters []ProblemReporter
	// StatusReporters are told the route statuses when they change (the
	// RouteStatusWriter).
	StatusReporters []RouteStatusReporter
	Metrics         *Metrics
	Logger          *slog.Logger
	// Clock is for tests.
	Clock clock.Clock
}

// Coalescer consumes store changes and produces mesh snapshots: after a
// change it waits HoldOff for more, but never more than MaxDelay after the
// first pending change, then builds a snapshot from the store and publishes
// it to the consumer, unless nothing in the mesh changed.
type Coalescer struct {
	store    *Store
	consumer Consumer
	opts     CoalescerOptions
	builder  *builder // used by Run's goroutine only

	mu sync.Mutex
	// timer fires at deadline; pending counts notifications since the last
	// build, the first of them at first.
	timer    clock.Timer
	pending  int
	first    time.Time
	deadline time.Time
	problems []Problem
	last     Update
	ready    bool
}

// NewCoalescer returns a coalescer of store's changes into snapshots for
// consumer. It subscribes to the store at once, so changes made before Run
// are not lost, and schedules a first build.
func NewCoalescer(store *Store, consumer Consumer, opts CoalescerOptions) *Coalescer {
	if opts.HoldOff <= 0 {
		opts.HoldOff = DefaultHoldOff
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDelay < opts.HoldOff {
		opts.MaxDelay = opts.HoldOff
	}
	if opts.Metrics == nil {
		opts.Metrics, _ = NewMetrics(nil) // cannot fail without a registerer
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	c := &Coalescer{store: store, consumer: consumer, opts: opts, builder: newBuilder()}
	c.timer = opts.Clock.NewTimer(time.Hour)
	c.timer.Stop()
	store.OnChange(c.Notify)
	c.Notify() // the first build: an empty mesh is a valid first snapshot
	return c
}

// Notify records a change. The store calls it; sources need not.
func (c *Coalescer) Notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Clock.Now()
	if c.pending == 0 {
		c.first = now
	}
	c.pending++
	c.deadline = now.Add(c.opts.HoldOff)
	if limit := c.first.Add(c.opts.MaxDelay); c.deadline.After(limit) {
		c.deadline = limit
	}
	c.timer.Reset(c.deadline.Sub(now))
}

// Run builds and publishes snapshots until ctx is done. The first build
// happens once every source of the store has synced.
func (c *Coalescer) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			c.timer.Stop()
			return nil
		case <-c.timer.C():
		}
		c.mu.Lock()
		if c.pending == 0 {
			c.mu.Unlock()
			continue
		}
		if now := c.opts.Clock.Now(); now.Before(c.deadline) {
			c.timer.Reset(c.deadline.Sub(now)) // a stale fire
			c.mu.Unlock()
			continue
		}
		events := c.pending
		c.pending = 0
		c.mu.Unlock()
		c.buildAndPublish(ctx, events)
	}
}

func (c *Coalescer) buildAndPublish(ctx context.Context, events int) {
	m, log := c.opts.Metrics, c.opts.Logger
	start := time.Now()
	sb := c.store.build(c.builder)
	if !sb.built {
		log.DebugContext(ctx, "discovery: sources not synced yet; build deferred")
		return
	}
	m.buildDuration.Observe(time.Since(start).Seconds())
	m.coalescedEvents.Add(float64(events))
	m.observeObjects(c.store.Counts())

	problems := sortProblems(append(slices.Clone(sb.problems), sb.sourceProblems...))
	c.mu.Lock()
	prevProblems := c.problems
	c.problems = problems
	c.mu.Unlock()
	if !slices.Equal(prevProblems, problems) {
		m.observeProblems(prevProblems, problems)
		for _, r := range c.opts.Reporters {
			r.ReportProblems(ctx, problems)
		}
	}

	if sb.routeStatusChanged {
		for _, r := range c.opts.StatusReporters {
			r.ReportRouteStatus(ctx, sb.routeStatuses)
		}
	}

	if !sb.changed {
		m.builds.WithLabelValues("unchanged").Inc()
		log.DebugContext(ctx, "discovery: nothing changed in the mesh", "events", events, "changes", sb.changes)
		return
	}
	c.mu.Lock()
	u := Update{
		Version:         c.last.Version + 1,
		Snapshot:        sb.snapshot,
		EndpointsOnly:   sb.endpointsOnly,
		ChangedServices: sb.changedServices,
		ChangedPorts:    sb.changedPorts,
		ChangedRoutes:   sb.changedRoutes,
		Problems:        problems,
	}
	c.mu.Unlock()
	kind := "full"
	if u.EndpointsOnly {
		kind = "endpoints"
	}
	log.DebugContext(ctx, "discovery: publishing snapshot", "version", u.Version, "update", kind,
		"services", len(u.Snapshot.Services), "changedServices", len(u.ChangedServices),
		"changedPorts", len(u.ChangedPorts), "events", events, "buildTime", time.Since(start))
	c.consumer.OnSnapshot(ctx, u)
	m.builds.WithLabelValues("published").Inc()
	m.snapshots.WithLabelValues(kind).Inc()
	c.mu.Lock()
	c.last = u
	c.ready = true
	c.mu.Unlock()
}

// Ready reports whether a first snapshot has been published (and the
// consumer has returned from it): what /readyz waits for.
func (c *Coalescer) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// Problems returns the problems found by the last build, including the
// sources' (files that do not parse), sorted. For /debug.
func (c *Coalescer) Problems() []Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.problems)
}

// Last returns the last published update; its Version is 0 before the first.
func (c *Coalescer) Last() Update {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
