package drain

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// Acks is what the tracker needs from the xDS server; *server.Server has it.
type Acks interface {
	// PendingAcks lists the streams that still hold, or were sent, a copy of
	// typeURL/name that accept does not approve.
	PendingAcks(typeURL, name string, accept func(types.Resource) bool) []server.PendingAck
	// SyncChanged returns a channel closed at the next ACK-state change.
	SyncChanged() <-chan struct{}
}

var _ Acks = (*server.Server)(nil)

// Options configure a Tracker. The zero value is usable.
type Options struct {
	// ClusterDomain is the one translation uses in cluster names
	// (translate.ClusterName); default translate.DefaultClusterDomain.
	ClusterDomain string
	// Retention is how long an endpoint removed from the mesh is remembered,
	// so that a pod whose endpoints are gone is still checked against the
	// clusters it was in; default 10 minutes.
	Retention time.Duration
	// Poll is how often a wait re-checks when nothing signals a change (not
	// every ACK does); default 200ms.
	Poll time.Duration
	// Registerer receives the drain metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ClusterDomain == "" {
		o.ClusterDomain = translate.DefaultClusterDomain
	}
	if o.Retention <= 0 {
		o.Retention = 10 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// ErrStopped is returned by Wait when the tracker stops (the control plane
// is shutting down) before the pod is drained.
var ErrStopped = errors.New("drain tracker stopped: the control plane is shutting down")

// Tracker answers "is this pod drained?" from the mesh snapshots and the
// proxies' ACKs.
//
// Consumes mesh snapshots (OnSnapshot, called after the xDS server's) and
// the xDS server's ACK state; produces drain statuses and blocking waits.
type Tracker struct {
	acks    Acks
	opts    Options
	metrics *metrics
	now     func() time.Time

	mu   sync.RWMutex
	idx  *index
	seen bool // a snapshot arrived
	// changed is closed and replaced at every snapshot.
	changed chan struct{}

	stopOnce sync.Once
	stopped  chan struct{}
}

// NewTracker returns a tracker asking acks (the xDS server) about ACKs.
func NewTracker(acks Acks, opts Options) *Tracker {
	opts = opts.withDefaults()
	return &Tracker{
		acks:    acks,
		opts:    opts,
		metrics: newMetrics(opts.Registerer),
		now:     time.Now,
		idx:     newIndex(),
		changed: make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// OnSnapshot records the endpoints of a new snapshot. Call it with every
// snapshot the xDS server gets, after the server, so the tracker never sees
// a snapshot the server has not installed. The snapshot is not modified.
func (t *Tracker) OnSnapshot(_ context.Context, snap *mesh.Snapshot, _ bool) {
	if snap == nil {
		return
	}
	now := t.now()
	t.mu.Lock()
	t.idx.update(snap, now)
	t.idx.prune(now, t.opts.Retention)
	t.seen = true
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

// Run prunes forgotten endpoints while no snapshot comes, until ctx ends;
// then every wait in progress returns ErrStopped, so an HTTP server
// shutting down is not held up by long polls. It returns nil.
func (t *Tracker) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			t.stopOnce.Do(func() { close(t.stopped) })
			return nil
		case <-tick.C:
			t.mu.Lock()
			t.idx.prune(t.now(), t.opts.Retention)
			t.mu.Unlock()
		}
	}
}

// Wait blocks until the target is drained, ctx ends or the tracker stops.
// It returns the last status, and nil when drained, ctx.Err() or
// ErrStopped otherwise. Every wait is counted in the metrics by outcome.
func (t *Tracker) Wait(ctx context.Context, target Target) (Status, error) {
	start := t.now()
	t.metrics.inProgress.Inc()
	defer t.metrics.inProgress.Dec()
	tick := time.NewTicker(t.opts.Poll)
	defer tick.Stop()
	for {
		// Take the wake-up channels before checking, so a change between
		// the check and the select is not missed.
		t.mu.RLock()
		snapChanged := t.changed
		t.mu.RUnlock()
		ackChanged := t.acks.SyncChanged()

		st := t.Check(target)
		st.WaitedSeconds = t.now().Sub(start).Seconds()
		if st.Drained {
			t.observe(target, st, outcomeDrained)
			return st, nil
		}
		select {
		case <-snapChanged:
		case <-ackChanged:
		case <-tick.C:
		case <-ctx.Done():
			st.WaitedSeconds = t.now().Sub(start).Seconds()
			outcome := outcomeCanceled
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				outcome = outcomeTimeout
			}
			t.observe(target, st, outcome)
			return st, ctx.Err()
		case <-t.stopped:
			st.WaitedSeconds = t.now().Sub(start).Seconds()
			t.observe(target, st, outcomeStopped)
			return st, ErrStopped
		}
	}
}

func (t *Tracker) observe(target Target, st Status, outcome string) {
	t.metrics.waits.WithLabelValues(outcome).Inc()
	t.metrics.duration.WithLabelValues(outcome).Observe(st.WaitedSeconds)
	args := []any{"target", target.String(), "outcome", outcome, "waited", time.Duration(st.WaitedSeconds * float64(time.Second)).Round(time.Millisecond),
		"clusters", len(st.Clusters), "reason", st.Reason}
	if outcome == outcomeDrained {
		t.opts.Log.Info("pod drained", args...)
		return
	}
	if len(st.Pending) > 0 {
		args = append(args, "pending", st.Pending[0].String(), "pendingTotal", st.PendingTotal)
	}
	t.opts.Log.Warn("drain wait ended before the pod was drained", args...)
}
