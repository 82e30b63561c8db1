package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/sluice-mesh/sluice/mesh"
)

// coalescerHarness runs a Coalescer on a fake clock and collects updates.
type coalescerHarness struct {
	t       *testing.T
	store   *Store
	clock   *clocktesting.FakeClock
	c       *Coalescer
	metrics *Metrics
	updates chan Update

	mu       sync.Mutex
	reported [][]Problem
}

func newCoalescerHarness(t *testing.T, holdOff, maxDelay time.Duration) *coalescerHarness {
	h := &coalescerHarness{
		t:       t,
		store:   NewStore(),
		clock:   clocktesting.NewFakeClock(time.Unix(1000, 0)),
		updates: make(chan Update, 100),
	}
	var err error
	h.metrics, err = NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	h.c = NewCoalescer(h.store, ConsumerFunc(func(_ context.Context, u Update) { h.updates <- u }), CoalescerOptions{
		HoldOff: holdOff, MaxDelay: maxDelay, Clock: h.clock, Metrics: h.metrics,
		Reporters: []ProblemReporter{ProblemReporterFunc(func(_ context.Context, ps []Problem) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.reported = append(h.reported, ps)
		})},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return h
}

func (h *coalescerHarness) builds() int {
	return int(testutil.ToFloat64(h.metrics.builds.WithLabelValues("published")) +
		testutil.ToFloat64(h.metrics.builds.WithLabelValues("unchanged")))
}

// waitBuilds waits until n builds have completed. It waits on a condition,
// never on time passing: with the fake clock nothing fires on its own.
func (h *coalescerHarness) waitBuilds(n int) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.builds() >= n }, 10*time.Second, time.Millisecond, "waiting for build %d", n)
	assert.Equal(h.t, n, h.builds(), "more builds than expected")
}

func (h *coalescerHarness) next() Update {
	h.t.Helper()
	select {
	case u := <-h.updates:
		return u
	case <-time.After(10 * time.Second):
		h.t.Fatal("no update")
		return Update{}
	}
}

func (h *coalescerHarness) noUpdate() {
	h.t.Helper()
	select {
	case u := <-h.updates:
		h.t.Fatalf("unexpected update %d", u.Version)
	default:
	}
}

func (h *coalescerHarness) upsertService(name string) {
	require.NoError(h.t, h.store.Upsert(newService("default", name).port("http", 80).obj))
}

func TestCoalescerHoldOff(t *testing.T) {
	h := newCoalescerHarness(t, 10*time.Millisecond, time.Second)

	// The first build happens a hold-off after start, even for an empty store.
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(1)
	first := h.next()
	assert.Equal(t, uint64(1), first.Version)
	assert.Empty(t, first.Snapshot.Services)
	assert.True(t, h.c.Ready())

	// A burst, each change within the hold-off of the previous: one build.
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		h.upsertService(name)
		h.clock.Step(9 * time.Millisecond)
	}
	assert.Equal(t, 1, h.builds(), "no build while changes keep coming within the hold-off")
	h.clock.Step(time.Millisecond)
	h.waitBuilds(2)
	u := h.next()
	assert.Len(t, u.Snapshot.Services, 5)
	assert.Len(t, u.ChangedServices, 5)
	assert.False(t, u.EndpointsOnly)
	assert.Equal(t, 1.0+5, testutil.ToFloat64(h.metrics.coalescedEvents), "5 changes plus the initial one were folded")
	h.noUpdate()
}

func TestCoalescerMaxDelay(t *testing.T) {
	h := newCoalescerHarness(t, 10*time.Millisecond, 50*time.Millisecond)
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(1)
	h.next()

	// A change every 5ms, forever: the max delay forces a build 50ms after
	// the first pending change.
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for i, name := range names {
		h.upsertService(name)
		h.clock.Step(5 * time.Millisecond)
		if i < len(names)-1 {
			assert.Equal(t, 1, h.builds(), "no build at %dms", 5*(i+1))
		}
	}
	h.waitBuilds(2) // at 50ms
	u := h.next()
	assert.Len(t, u.Snapshot.Services, 10)

	// Changes that arrived during or after the forced build start a new cycle.
	h.upsertService("k")
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(3)
	assert.Len(t, h.next().Snapshot.Services, 11)
}

func TestCoalescerEndpointsOnlyAndNoOp(t *testing.T) {
	h := newCoalescerHarness(t, 10*time.Millisecond, 100*time.Millisecond)
	require.NoError(t, h.store.Upsert(newService("default", "a").port("http", 80).obj))
	require.NoError(t, h.store.Upsert(newSlice("default", "a-1", "a").port("http", 8080).endpoint("10.0.0.1").obj))
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(1)
	full := h.next()
	assert.False(t, full.EndpointsOnly)

	require.NoError(t, h.store.Upsert(newSlice("default", "a-1", "a").port("http", 8080).endpoint("10.0.0.1", notReady()).obj))
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(2)
	u := h.next()
	assert.True(t, u.EndpointsOnly)
	assert.Equal(t, uint64(2), u.Version)
	assert.True(t, sameSlice(full.Snapshot.Services, u.Snapshot.Services))
	assert.Equal(t, []mesh.PortKey{portKey("default", "a", 80)}, u.ChangedPorts)
	assert.Equal(t, mesh.Unhealthy, u.Snapshot.Endpoints[portKey("default", "a", 80)][0].Health)

	// A pod nobody refers to changes: a build, but nothing to publish.
	require.NoError(t, h.store.Upsert(newPod("default", "unrelated", "", "", nil)))
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(3)
	h.noUpdate()
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.builds.WithLabelValues("unchanged")))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.snapshots.WithLabelValues("full")))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.snapshots.WithLabelValues("endpoints")))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.objects.WithLabelValues(KindPod)))
	assert.Equal(t, uint64(2), h.c.Last().Version)
}

func TestCoalescerWaitsForSources(t *testing.T) {
	h := newCoalescerHarness(t, 10*time.Millisecond, 100*time.Millisecond)
	markSynced := h.store.RegisterSource("test")
	h.upsertService("a")
	h.clock.Step(10 * time.Millisecond)
	// The timer fired but the source is not synced: nothing is built. There
	// is no build to wait for, so give the loop a moment to (not) act.
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, 0, h.builds())
	assert.False(t, h.c.Ready())
	h.noUpdate()

	markSynced()
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(1)
	u := h.next()
	assert.Len(t, u.Snapshot.Services, 1)
	assert.True(t, h.c.Ready())
}

func TestCoalescerProblems(t *testing.T) {
	h := newCoalescerHarness(t, 10*time.Millisecond, 100*time.Millisecond)
	h.upsertService("a")
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(1)
	h.next()

	// A slice for an unknown service changes no snapshot, but is a problem.
	require.NoError(t, h.store.Upsert(newSlice("default", "ghost-1", "ghost").port("http", 80).endpoint("10.0.0.1").obj))
	h.store.SetSourceProblems("file:x", []Problem{{Kind: KindFile, Name: "x/bad.yaml", Reason: ReasonParseError, Message: "boom"}})
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(2)
	h.noUpdate()
	assert.Equal(t, []string{ReasonUnknownService, ReasonParseError}, reasons(h.c.Problems()))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.problems.WithLabelValues(ReasonUnknownService)))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.problemsTotal.WithLabelValues(ReasonParseError)))

	// The same problems again: reporters are not called again.
	h.upsertService("b")
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(3)
	assert.Equal(t, []string{ReasonUnknownService, ReasonParseError}, reasons(h.next().Problems))

	// Fixed: problems go, the gauge drops, the counter stays.
	require.NoError(t, h.store.Delete(KindEndpointSlice, "default", "ghost-1"))
	h.store.SetSourceProblems("file:x", nil)
	h.clock.Step(10 * time.Millisecond)
	h.waitBuilds(4)
	assert.Empty(t, h.c.Problems())
	assert.Equal(t, 0.0, testutil.ToFloat64(h.metrics.problems.WithLabelValues(ReasonUnknownService)))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.problemsTotal.WithLabelValues(ReasonUnknownService)))

	h.mu.Lock()
	defer h.mu.Unlock()
	require.Len(t, h.reported, 2, "reported when problems appeared and when they went")
	assert.Len(t, h.reported[0], 2)
	assert.Empty(t, h.reported[1])
}
