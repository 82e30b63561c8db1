package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/sluice-mesh/sluice/mesh"
)

// TestKubernetesSource runs the source on client-go's fake clientset:
// objects in, snapshots out, through the real informers, store and
// coalescer, and problems out as Events through a real event broadcaster.
func TestKubernetesSource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		newNamespace("shop", nil),
		newNode("node-a", "zone-a"),
		newPod("shop", "cart-1", "node-a", "cart", map[string]string{"app": "cart"}),
		newService("shop", "cart").port("http", 80).obj,
		newSlice("shop", "cart-1", "cart").port("http", 8080).endpoint("10.1.0.1", forPod("cart-1")).obj,
		newService("shop", "odd").port("http", 80).annotate(AnnotationConnectTimeout, "soon").obj,
	)
	store := NewStore()
	src, err := NewKubernetesSource(client, store, KubernetesOptions{})
	require.NoError(t, err)
	updates := make(chan Update, 10)
	c := NewCoalescer(store, ConsumerFunc(func(_ context.Context, u Update) { updates <- u }), CoalescerOptions{
		HoldOff: time.Millisecond, MaxDelay: 10 * time.Millisecond, Reporters: []ProblemReporter{src},
	})
	srcDone, cDone := make(chan error), make(chan error)
	go func() { srcDone <- src.Run(ctx) }()
	go func() { cDone <- c.Run(ctx) }()

	next := func() Update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(20 * time.Second):
			t.Fatal("no update")
			return Update{}
		}
	}

	// The first update holds everything: nothing is published before sync.
	u := next()
	assert.True(t, src.HasSynced())
	assert.Equal(t, uint64(1), u.Version)
	require.Len(t, u.Snapshot.Services, 2)
	assert.Equal(t, []mesh.Endpoint{{Address: "10.1.0.1", Port: 8080, Zone: "zone-a", Health: mesh.Healthy,
		Pod: "cart-1", ServiceAccount: "cart", Labels: map[string]string{"app": "cart"}}},
		u.Snapshot.Endpoints[portKey("shop", "cart", 80)])
	assert.Equal(t, []string{ReasonInvalidAnnotation}, reasons(u.Problems))

	// An endpoint becomes not ready: an endpoints-only update.
	slice := newSlice("shop", "cart-1", "cart").port("http", 8080).endpoint("10.1.0.1", forPod("cart-1"), notReady()).obj
	_, err = client.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{})
	require.NoError(t, err)
	u2 := next()
	assert.True(t, u2.EndpointsOnly)
	assert.True(t, sameSlice(u.Snapshot.Services, u2.Snapshot.Services))
	assert.Equal(t, mesh.Unhealthy, u2.Snapshot.Endpoints[portKey("shop", "cart", 80)][0].Health)

	// A slice for a service that does not exist: no update, an Event.
	_, err = client.DiscoveryV1().EndpointSlices("shop").Create(ctx,
		newSlice("shop", "ghost-1", "ghost").port("http", 80).endpoint("10.1.0.9").obj, metav1.CreateOptions{})
	require.NoError(t, err)
	eventFor := func(kind, name, reason string) *corev1.Event {
		list, err := client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i, e := range list.Items {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason {
				return &list.Items[i]
			}
		}
		return nil
	}
	require.Eventually(t, func() bool { return eventFor("EndpointSlice", "ghost-1", ReasonUnknownService) != nil },
		20*time.Second, 10*time.Millisecond)
	ev := eventFor("EndpointSlice", "ghost-1", ReasonUnknownService)
	assert.Equal(t, corev1.EventTypeWarning, ev.Type)
	assert.Equal(t, "service shop/ghost does not exist; slice ignored", ev.Message)
	assert.Equal(t, "discovery.k8s.io/v1", ev.InvolvedObject.APIVersion)
	assert.Equal(t, "uid-slice-shop-ghost-1", string(ev.InvolvedObject.UID))
	assert.Equal(t, "sluice", ev.Source.Component)
	inv := eventFor("Service", "odd", ReasonInvalidAnnotation)
	require.NotNil(t, inv, "the invalid annotation of the first build is an Event too")
	assert.Contains(t, inv.Message, `invalid sluice.dev/connect-timeout "soon"`)

	// The service is deleted: a full update without it.
	require.NoError(t, client.CoreV1().Services("shop").Delete(ctx, "cart", metav1.DeleteOptions{}))
	u3 := next()
	assert.False(t, u3.EndpointsOnly)
	assert.Equal(t, []mesh.ServiceKey{{Namespace: "shop", Name: "cart"}}, u3.ChangedServices)
	assert.Len(t, u3.Snapshot.Services, 1)

	cancel()
	require.NoError(t, <-srcDone)
	require.NoError(t, <-cDone)
	assert.Empty(t, updates)
}

func TestEventReporterDedupe(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	r := newEventReporter(rec, 2, nil)
	ghost := Problem{Kind: "EndpointSlice", Namespace: "a", Name: "ghost", Reason: ReasonUnknownService, Message: "m1"}
	bad := Problem{Kind: "Service", Namespace: "a", Name: "bad", Reason: ReasonNoPorts, Message: "m2"}
	file := Problem{Kind: KindFile, Name: "x.yaml", Reason: ReasonParseError, Message: "m3"}
	other := Problem{Kind: "Service", Namespace: "a", Name: "other", Reason: ReasonNoPorts, Message: "m4"}
	events := func() []string {
		var out []string
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	ctx := context.Background()

	r.report(ctx, []Problem{ghost, file})
	assert.Equal(t, []string{"Warning UnknownService m1"}, events(), "files get no Events")
	r.report(ctx, []Problem{ghost, file})
	assert.Empty(t, events(), "a problem is recorded once")

	// At most 2 per report; the rest come with the next report.
	r.report(ctx, []Problem{bad, ghost, other, {Kind: "Pod", Namespace: "a", Name: "p", Reason: "R", Message: "m5"}})
	assert.Equal(t, []string{"Warning NoPorts m2", "Warning NoPorts m4"}, events())
	r.report(ctx, []Problem{bad, ghost, other, {Kind: "Pod", Namespace: "a", Name: "p", Reason: "R", Message: "m5"}})
	assert.Equal(t, []string{"Warning R m5"}, events())

	// A problem that goes away and comes back is recorded again.
	r.report(ctx, []Problem{bad})
	r.report(ctx, []Problem{bad, ghost})
	assert.Equal(t, []string{"Warning UnknownService m1"}, events())
}

func TestTrimObject(t *testing.T) {
	pod := newPod("ns", "p", "node", "sa", map[string]string{"a": "b"})
	pod.ResourceVersion = "7"
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "x"}}
	pod.Status.Phase = corev1.PodRunning
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	got, err := trimObject(pod)
	require.NoError(t, err)
	assert.Equal(t, &corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", ResourceVersion: "7", Labels: map[string]string{"a": "b"}},
		Spec:       corev1.PodSpec{NodeName: "node", ServiceAccountName: "sa"},
	}, got)

	svc := newService("ns", "s").port("http", 80).obj
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	got, err = trimObject(svc)
	require.NoError(t, err)
	assert.Nil(t, got.(*corev1.Service).ManagedFields)
	assert.Len(t, got.(*corev1.Service).Spec.Ports, 1)

	var _ runtime.Object = svc
}
