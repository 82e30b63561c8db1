package discovery

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

// testLeader is a Leader the test switches.
type testLeader struct {
	mu      sync.Mutex
	leading bool
	subs    []func(bool)
}

func (l *testLeader) IsLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading
}

func (l *testLeader) Subscribe(fn func(bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, fn)
}

func (l *testLeader) set(leading bool) {
	l.mu.Lock()
	l.leading = leading
	subs := l.subs
	l.mu.Unlock()
	for _, fn := range subs {
		fn(leading)
	}
}

// statusUpdates counts the status updates a fake clientset received.
func statusUpdates(c *gatewayfake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// writerFixture is a store, a fake Gateway API clientset holding the same
// route, and a writer between them.
type writerFixture struct {
	store  *Store
	client *gatewayfake.Clientset
	writer *RouteStatusWriter
	reg    *prometheus.Registry
	route  *gatewayv1.HTTPRoute
}

func newWriterFixture(t *testing.T, leader Leader) *writerFixture {
	t.Helper()
	route := newHTTPRoute("shop", "canary").parent("api").parent("ghost").
		rule(httpRule().to("api-stable", 9090, 90).to("api-canary", 9090, 10)).obj
	// Another controller's status, which must survive.
	route.Status.Parents = []gatewayv1.RouteParentStatus{{
		ParentRef: gatewayv1.ParentReference{Name: "gw"}, ControllerName: "example.com/gateway",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: metav1.NewTime(epoch)}},
	}}
	f := &writerFixture{store: NewStore(), client: gatewayfake.NewClientset(route.DeepCopy()), reg: prometheus.NewRegistry(), route: route}
	for _, o := range append(canaryServices("shop"), route) {
		require.NoError(t, f.store.Upsert(o))
	}
	var err error
	f.writer, err = NewRouteStatusWriter(f.client, f.store, leader, RouteStatusWriterOptions{
		Resync: 50 * time.Millisecond, RetryDelay: 20 * time.Millisecond, Registerer: f.reg,
	})
	require.NoError(t, err)
	sb := f.store.build(newBuilder())
	require.True(t, sb.routeStatusChanged)
	f.writer.ReportRouteStatus(context.Background(), sb.routeStatuses)
	return f
}

func (f *writerFixture) get(t *testing.T) *gatewayv1.HTTPRoute {
	t.Helper()
	r, err := f.client.GatewayV1().HTTPRoutes("shop").Get(context.Background(), "canary", metav1.GetOptions{})
	require.NoError(t, err)
	return r
}

func runInBackground(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
}

func TestRouteStatusWriterWritesOnlyOnTheLeader(t *testing.T) {
	leader := &testLeader{}
	f := newWriterFixture(t, leader)
	runInBackground(t, f.writer.Run)

	time.Sleep(200 * time.Millisecond) // several resyncs
	assert.Zero(t, statusUpdates(f.client), "a follower writes nothing")

	leader.set(true)
	require.Eventually(t, func() bool { return statusUpdates(f.client) == 1 }, 5*time.Second, 10*time.Millisecond)
	r := f.get(t)
	require.Len(t, r.Status.Parents, 3)
	assert.Equal(t, "example.com/gateway", string(r.Status.Parents[0].ControllerName), "another controller's entry stays first")
	api, ghost := r.Status.Parents[1], r.Status.Parents[2]
	assert.Equal(t, ControllerName, api.ControllerName)
	assert.Equal(t, map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs"}, conditionSummary(api))
	assert.Equal(t, map[string]string{"Accepted": "False/NoMatchingParent", "ResolvedRefs": "True/ResolvedRefs"}, conditionSummary(ghost))
	for _, c := range api.Conditions {
		assert.False(t, c.LastTransitionTime.IsZero())
		assert.Equal(t, int64(1), c.ObservedGeneration)
	}

	// The informer delivers the written route: the store now holds our
	// status, so resyncs find nothing to do and do not even read the route.
	require.NoError(t, f.store.Upsert(r))
	reads := len(f.client.Actions())
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, 1, statusUpdates(f.client), "an unchanged status is not written again")
	assert.Equal(t, reads, len(f.client.Actions()), "nor read")

	// Someone overwrites the status: the next resync repairs it.
	overwritten := r.DeepCopy() // objects in the store are never mutated
	overwritten.Status.Parents = overwritten.Status.Parents[:1]
	_, err := f.client.GatewayV1().HTTPRoutes("shop").UpdateStatus(context.Background(), overwritten, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, f.store.Upsert(overwritten))
	require.Eventually(t, func() bool { return len(f.get(t).Status.Parents) == 3 }, 5*time.Second, 10*time.Millisecond)

	// Leadership lost: a new status is not written.
	leader.set(false)
	time.Sleep(20 * time.Millisecond)
	before := statusUpdates(f.client)
	next := newHTTPRoute("shop", "canary").parent("api").rule(httpRule().to("api-stable", 9090, 1)).obj
	next.Generation = 2
	st := BuildRouteStatuses(inputsOf(t, append(canaryServices("shop"), next)...))
	f.writer.ReportRouteStatus(context.Background(), st)
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, before, statusUpdates(f.client))
	assert.Equal(t, 2.0, testutil.ToFloat64(f.writer.writes.WithLabelValues("written")))
}

func TestRouteStatusWriterRetriesConflicts(t *testing.T) {
	f := newWriterFixture(t, AlwaysLeader{})
	var conflicts atomic.Int32
	f.client.PrependReactor("update", "httproutes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" && conflicts.Add(1) <= 2 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: gatewayGroup, Resource: "httproutes"}, "canary", nil)
		}
		return false, nil, nil
	})
	runInBackground(t, f.writer.Run)
	require.Eventually(t, func() bool { return conflicts.Load() == 3 }, 5*time.Second, 10*time.Millisecond, "two conflicts, then the write")
	gets := 0
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "get" {
			gets++
		}
	}
	assert.Equal(t, 3, gets, "each try reads the route afresh")
	assert.Len(t, f.get(t).Status.Parents, 3)
}

func TestRouteStatusWriterSkipsStaleGenerations(t *testing.T) {
	f := newWriterFixture(t, AlwaysLeader{})
	newer := f.route.DeepCopy()
	newer.Generation = 2
	_, err := f.client.GatewayV1().HTTPRoutes("shop").Update(context.Background(), newer, metav1.UpdateOptions{})
	require.NoError(t, err)
	runInBackground(t, f.writer.Run)
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, statusUpdates(f.client), "a status computed for generation 1 is not written over generation 2")
	assert.Positive(t, testutil.ToFloat64(f.writer.writes.WithLabelValues("unchanged")))
}

// TestLeaderElection runs two electors on one fake API server: one leads,
// and when it stops (releasing the Lease), the other takes over. Each has a
// status writer with its own fake Gateway API client: only the leader's
// writes.
func TestLeaderElection(t *testing.T) {
	kube := k8sfake.NewClientset()
	cfg := LeaderElectionConfig{Namespace: "sluice-system", Name: "sluice-leader",
		LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	newReplica := func(id string) (*LeaderElector, *writerFixture, *prometheus.Registry) {
		c := cfg
		c.Identity = id
		reg := prometheus.NewRegistry()
		e, err := NewLeaderElector(kube, c, reg, nil)
		require.NoError(t, err)
		return e, newWriterFixture(t, e), reg
	}
	e1, w1, reg1 := newReplica("one")
	e2, w2, _ := newReplica("two")
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error)
	go func() { done1 <- e1.Run(ctx1) }()
	runInBackground(t, w1.writer.Run)
	require.Eventually(t, e1.IsLeader, 5*time.Second, 10*time.Millisecond)
	runInBackground(t, e2.Run)
	runInBackground(t, w2.writer.Run)

	require.Eventually(t, func() bool { return statusUpdates(w1.client) == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.False(t, e2.IsLeader())
	assert.Zero(t, statusUpdates(w2.client), "the follower writes nothing")
	assert.Equal(t, 1.0, gaugeValue(t, reg1, "sluice_leader_election_is_leader"))
	lease, err := kube.CoordinationV1().Leases("sluice-system").Get(context.Background(), "sluice-leader", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "one", *lease.Spec.HolderIdentity)

	stop1()
	require.NoError(t, <-done1)
	assert.False(t, e1.IsLeader())
	assert.Equal(t, 0.0, gaugeValue(t, reg1, "sluice_leader_election_is_leader"))
	require.Eventually(t, e2.IsLeader, 5*time.Second, 10*time.Millisecond, "the released Lease is taken over")
	require.Eventually(t, func() bool { return statusUpdates(w2.client) == 1 }, 5*time.Second, 10*time.Millisecond,
		"the new leader writes status")
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
