package discovery

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// RouteStatusReporter is told the route statuses after every build in
// which they changed (and after the first build), whether or not a
// snapshot was published.
type RouteStatusReporter interface {
	ReportRouteStatus(ctx context.Context, statuses []RouteStatus)
}

// Defaults of a RouteStatusWriter.
const (
	// DefaultStatusResync is how often every route's status is checked
	// against the wanted one, to repair statuses others overwrote.
	DefaultStatusResync = time.Minute
	// DefaultStatusRetry is the delay before a failed write is retried.
	DefaultStatusRetry = time.Second
)

// RouteStatusWriterOptions configure a RouteStatusWriter.
type RouteStatusWriterOptions struct {
	Resync     time.Duration
	RetryDelay time.Duration
	// Registerer gets sluice_route_status_writes_total{result}; nil: none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is for tests.
	Now func() time.Time
}

// RouteStatusWriter consumes route statuses (it is a RouteStatusReporter)
// and produces status writes to the API server, on the leader only: for
// each route whose status (as the store last saw it) differs from the
// wanted one, it reads the route, merges Sluice's parent statuses into it
// and updates the status subresource, retrying on conflict. Routes whose
// status already matches are not written.
type RouteStatusWriter struct {
	client gatewayclient.Interface
	store  *Store
	leader Leader
	opts   RouteStatusWriterOptions
	writes *prometheus.CounterVec

	mu      sync.Mutex
	desired map[routeRef]RouteStatus
	dirty   map[routeRef]bool
	wake    chan struct{}
}

// routeRef names a route.
type routeRef struct{ kind, namespace, name string }

// NewRouteStatusWriter returns a writer of the statuses it is told about,
// comparing against the routes in store and writing through client while
// leader leads.
func NewRouteStatusWriter(client gatewayclient.Interface, store *Store, leader Leader, opts RouteStatusWriterOptions) (*RouteStatusWriter, error) {
	if opts.Resync <= 0 {
		opts.Resync = DefaultStatusResync
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultStatusRetry
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &RouteStatusWriter{
		client: client, store: store, leader: leader, opts: opts,
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_route_status_writes_total",
			Help: `Route status updates, by result: "written", "unchanged" (already as wanted when read) or "error".`,
		}, []string{"result"}),
		desired: map[routeRef]RouteStatus{},
		dirty:   map[routeRef]bool{},
		wake:    make(chan struct{}, 1),
	}
	for _, r := range []string{"written", "unchanged", "error"} {
		w.writes.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(w.writes); err != nil {
			return nil, fmt.Errorf("registering route status metrics: %w", err)
		}
	}
	leader.Subscribe(func(leading bool) {
		if leading {
			w.markAll()
		}
	})
	return w, nil
}

// ReportRouteStatus records the wanted statuses. It implements
// RouteStatusReporter.
func (w *RouteStatusWriter) ReportRouteStatus(_ context.Context, statuses []RouteStatus) {
	w.mu.Lock()
	next := make(map[routeRef]RouteStatus, len(statuses))
	for _, s := range statuses {
		ref := routeRef{s.Kind, s.Namespace, s.Name}
		next[ref] = s
		if old, ok := w.desired[ref]; !ok || !routeStatusEqual(old, s) {
			w.dirty[ref] = true
		}
	}
	w.desired = next
	w.mu.Unlock()
	w.signal()
}

func routeStatusEqual(a, b RouteStatus) bool {
	return a.UID == b.UID && a.Generation == b.Generation && parentStatusesEqual(a.Parents, b.Parents)
}

func (w *RouteStatusWriter) markAll() {
	w.mu.Lock()
	for ref := range w.desired {
		w.dirty[ref] = true
	}
	w.mu.Unlock()
	w.signal()
}

func (w *RouteStatusWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run writes statuses while this replica leads, until ctx ends.
func (w *RouteStatusWriter) Run(ctx context.Context) error {
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()
	var retryC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		case <-resync.C:
			w.markAll()
			continue
		case <-retryC:
			retryC = nil
		}
		if !w.leader.IsLeader() {
			continue
		}
		if failed := w.sync(ctx); failed && retryC == nil {
			retryC = time.After(w.opts.RetryDelay)
		}
	}
}

// sync writes the dirty routes; it reports whether some failed (they stay
// dirty).
func (w *RouteStatusWriter) sync(ctx context.Context) (failed bool) {
	w.mu.Lock()
	refs := slices.SortedFunc(maps.Keys(w.dirty), func(a, b routeRef) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	clear(w.dirty)
	w.mu.Unlock()
	for _, ref := range refs {
		if ctx.Err() != nil || !w.leader.IsLeader() {
			w.requeue(ref)
			continue
		}
		w.mu.Lock()
		want, ok := w.desired[ref]
		w.mu.Unlock()
		if !ok {
			continue // the route is gone
		}
		if err := w.write(ctx, want); err != nil {
			w.writes.WithLabelValues("error").Inc()
			w.opts.Logger.WarnContext(ctx, "route status: write failed; retrying", "route", want.Key(), "err", err)
			w.requeue(ref)
			failed = true
		}
	}
	return failed
}

func (w *RouteStatusWriter) requeue(ref routeRef) {
	w.mu.Lock()
	w.dirty[ref] = true
	w.mu.Unlock()
}

// write brings one route's status to want. It first compares with the
// route as the store holds it (the informer's copy), so that routes whose
// status is already right cost no request.
func (w *RouteStatusWriter) write(ctx context.Context, want RouteStatus) error {
	now := metav1.NewTime(w.opts.Now().Truncate(time.Second))
	if cur, ok := w.store.routeStatusParents(want.Kind, want.Namespace, want.Name); !ok {
		return nil // deleted
	} else if parentStatusesEqual(cur, mergeParentStatuses(cur, want.Parents, now)) {
		return nil
	}
	written := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		written, err = w.update(ctx, want, now)
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case written:
		w.writes.WithLabelValues("written").Inc()
		w.opts.Logger.DebugContext(ctx, "route status: written", "route", want.Key(), "generation", want.Generation)
	default:
		w.writes.WithLabelValues("unchanged").Inc()
	}
	return nil
}

// update reads the route, merges want into its status and writes it if
// that changes anything. A route replaced (another UID) or at another
// generation than want was computed for is left alone: a new build will
// report its status.
func (w *RouteStatusWriter) update(ctx context.Context, want RouteStatus, now metav1.Time) (bool, error) {
	gw := w.client.GatewayV1()
	switch want.Kind {
	case KindHTTPRoute:
		r, err := gw.HTTPRoutes(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		merged, ok := mergeFor(&r.ObjectMeta, r.Status.Parents, want, now)
		if !ok {
			return false, nil
		}
		r.Status.Parents = merged
		_, err = gw.HTTPRoutes(want.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
		return err == nil, err
	case KindGRPCRoute:
		r, err := gw.GRPCRoutes(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		merged, ok := mergeFor(&r.ObjectMeta, r.Status.Parents, want, now)
		if !ok {
			return false, nil
		}
		r.Status.Parents = merged
		_, err = gw.GRPCRoutes(want.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
		return err == nil, err
	}
	return false, fmt.Errorf("route status: unknown kind %q", want.Kind)
}

// mergeFor returns the merged parents of a route read from the API server,
// and false when there is nothing to write.
func mergeFor(meta *metav1.ObjectMeta, cur []gatewayv1.RouteParentStatus, want RouteStatus, now metav1.Time) ([]gatewayv1.RouteParentStatus, bool) {
	if string(meta.UID) != want.UID || meta.Generation != want.Generation {
		return nil, false
	}
	merged := mergeParentStatuses(cur, want.Parents, now)
	if parentStatusesEqual(cur, merged) {
		return nil, false
	}
	return merged, true
}

// routeStatusParents returns the status parents of a route as the store
// holds it, and whether the route exists.
func (s *Store) routeStatusParents(kind, namespace, name string) ([]gatewayv1.RouteParentStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.routeParents(kind, objectKey{namespace, name})
}

var _ RouteStatusReporter = (*RouteStatusWriter)(nil)
