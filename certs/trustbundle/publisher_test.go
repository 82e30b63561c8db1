package trustbundle

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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluice-mesh/sluice/certs/ca"
)

func newCA(t *testing.T, version uint64) *ca.CA {
	t.Helper()
	m, err := ca.Generate(ca.GenerateOptions{TrustDomain: "cluster.local", Now: time.Now()})
	require.NoError(t, err)
	c, err := ca.New(m, ca.Options{BundleVersion: version})
	require.NoError(t, err)
	return c
}

type fakeLeader struct {
	leading atomic.Bool
	mu      sync.Mutex
	subs    []func(bool)
}

func (l *fakeLeader) IsLeader() bool { return l.leading.Load() }
func (l *fakeLeader) Subscribe(fn func(bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, fn)
}
func (l *fakeLeader) set(leading bool) {
	l.leading.Store(leading)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fn := range l.subs {
		fn(leading)
	}
}

func namespace(name string, terminating bool) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if terminating {
		ns.Status.Phase = corev1.NamespaceTerminating
		ns.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		ns.Finalizers = []string{"kubernetes"}
	}
	return ns
}

type harness struct {
	client *fake.Clientset
	source *ca.Source
	leader *fakeLeader
	pub    *Publisher
}

func start(t *testing.T, leading bool, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{client: fake.NewClientset(objs...), source: ca.NewSource(newCA(t, 1)), leader: &fakeLeader{}}
	h.leader.leading.Store(leading)
	var err error
	h.pub, err = New(Config{Client: h.client, Source: h.source, Leader: h.leader, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.pub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return h
}

// bundleIn returns the published bundle and version in namespace ns, or
// "" when there is no ConfigMap.
func (h *harness) bundleIn(t *testing.T, ns string) (string, string) {
	t.Helper()
	cm, err := h.client.CoreV1().ConfigMaps(ns).Get(t.Context(), DefaultName, metav1.GetOptions{})
	if err != nil {
		return "", ""
	}
	return cm.Data[DefaultKey], cm.Annotations[AnnotationVersion]
}

func (h *harness) eventuallyPublished(t *testing.T, ns string, c *ca.CA, want string) {
	t.Helper()
	require.EventuallyWithT(t, func(t *assert.CollectT) {
		b, v := h.bundleIn(&testing.T{}, ns)
		assert.Equal(t, string(c.TrustBundlePEM()), b)
		assert.Equal(t, want, v)
	}, 5*time.Second, 10*time.Millisecond, "namespace %s", ns)
}

// writes counts the create and update calls on ConfigMaps.
func (h *harness) writes() (creates, updates int) {
	for _, a := range h.client.Actions() {
		if a.GetResource().Resource != "configmaps" {
			continue
		}
		switch a.GetVerb() {
		case "create":
			creates++
		case "update":
			updates++
		}
	}
	return creates, updates
}

func TestPublishesToEveryNamespaceButTerminatingOnes(t *testing.T) {
	h := start(t, true, namespace("default", false), namespace("shop", false), namespace("gone", true))
	cur := h.source.Current()
	h.eventuallyPublished(t, "default", cur, "1")
	h.eventuallyPublished(t, "shop", cur, "1")

	// A namespace created later gets it too.
	_, err := h.client.CoreV1().Namespaces().Create(t.Context(), namespace("late", false), metav1.CreateOptions{})
	require.NoError(t, err)
	h.eventuallyPublished(t, "late", cur, "1")

	cm, err := h.client.CoreV1().ConfigMaps("shop").Get(t.Context(), DefaultName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "sluice", cm.Labels[LabelManagedBy])
	b, _ := h.bundleIn(t, "gone")
	assert.Empty(t, b, "nothing is written into a terminating namespace")

	// Only creates; re-checks of matching ConfigMaps write nothing.
	h.pub.enqueueAll()
	time.Sleep(200 * time.Millisecond)
	creates, updates := h.writes()
	assert.Equal(t, 3, creates)
	assert.Zero(t, updates)
	assert.Equal(t, 3.0, testutil.ToFloat64(h.pub.writes.WithLabelValues("create")))
}

func TestFollowsTheBundleAndRepairsEdits(t *testing.T) {
	h := start(t, true, namespace("a", false), namespace("b", false))
	h.eventuallyPublished(t, "a", h.source.Current(), "1")
	h.eventuallyPublished(t, "b", h.source.Current(), "1")

	next := newCA(t, 2)
	h.source.Set(next)
	h.eventuallyPublished(t, "a", next, "2")
	h.eventuallyPublished(t, "b", next, "2")
	// Once they match, a re-check writes nothing.
	time.Sleep(100 * time.Millisecond)
	_, updates := h.writes()
	assert.GreaterOrEqual(t, updates, 2, "one update per namespace (more only if the cache lagged)")
	h.pub.enqueueAll()
	time.Sleep(200 * time.Millisecond)
	_, again := h.writes()
	assert.Equal(t, updates, again, "matching ConfigMaps are not written")

	// Someone edits a ConfigMap (keeping another key of theirs): the
	// bundle is put back, their key kept.
	cm, err := h.client.CoreV1().ConfigMaps("a").Get(t.Context(), DefaultName, metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data[DefaultKey] = "garbage"
	cm.Data["other"] = "kept"
	_, err = h.client.CoreV1().ConfigMaps("a").Update(t.Context(), cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.eventuallyPublished(t, "a", next, "2")
	cm, err = h.client.CoreV1().ConfigMaps("a").Get(t.Context(), DefaultName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "kept", cm.Data["other"])

	// Deleted: created again.
	require.NoError(t, h.client.CoreV1().ConfigMaps("b").Delete(t.Context(), DefaultName, metav1.DeleteOptions{}))
	h.eventuallyPublished(t, "b", next, "2")
}

func TestOnlyTheLeaderWrites(t *testing.T) {
	h := start(t, false, namespace("a", false))
	time.Sleep(300 * time.Millisecond)
	creates, updates := h.writes()
	assert.Zero(t, creates+updates, "a replica that does not lead writes nothing")

	h.leader.set(true)
	h.eventuallyPublished(t, "a", h.source.Current(), "1")
}

func TestFailedWritesAreCountedAndRetried(t *testing.T) {
	h := &harness{client: fake.NewClientset(namespace("a", false)), source: ca.NewSource(newCA(t, 1))}
	var fails atomic.Int32
	h.client.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fails.Add(1) <= 2 {
			return true, nil, assert.AnError
		}
		return false, nil, nil
	})
	var err error
	h.pub, err = New(Config{Client: h.client, Source: h.source})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.pub.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	h.eventuallyPublished(t, "a", h.source.Current(), "1")
	assert.Equal(t, 2.0, testutil.ToFloat64(h.pub.errs.WithLabelValues("create")))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.pub.writes.WithLabelValues("create")))
}
