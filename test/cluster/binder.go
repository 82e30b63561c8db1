package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// binder is a minimal scheduler: it binds every unscheduled pod of the
// default scheduler to the test kubelet's nodes, round robin among the nodes
// that match the pod's nodeSelector. Affinity, taints and resources are not
// considered.
type binder struct {
	client kubernetes.Interface
	pods   corelisters.PodLister
	nodes  []*nodeState
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[cache.ObjectName]

	mu   sync.Mutex
	next int
}

func newBinder(client kubernetes.Interface, pods corelisters.PodLister, nodes []*nodeState, log *slog.Logger) *binder {
	return &binder{
		client: client,
		pods:   pods,
		nodes:  nodes,
		log:    log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName](),
			workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "test-kubelet-binder"}),
	}
}

func (b *binder) enqueue(pod *corev1.Pod) {
	if pod.DeletionTimestamp == nil && pod.Spec.SchedulerName == corev1.DefaultSchedulerName {
		b.queue.Add(cache.MetaObjectToName(pod))
	}
}

func (b *binder) run(ctx context.Context) {
	for {
		key, shutdown := b.queue.Get()
		if shutdown {
			return
		}
		if err := b.bind(ctx, key); err != nil {
			b.log.Warn("bind pod", "pod", key.String(), "err", err)
			b.queue.AddRateLimited(key)
		} else {
			b.queue.Forget(key)
		}
		b.queue.Done(key)
	}
}

func (b *binder) bind(ctx context.Context, key cache.ObjectName) error {
	pod, err := b.pods.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return nil
	}
	node, err := b.pick(pod)
	if err != nil {
		return err
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node.Name},
	}
	err = b.client.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // bound meanwhile, or gone
	}
	if err != nil {
		return fmt.Errorf("bind to %s: %w", node.Name, err)
	}
	b.log.Info("bound pod", "pod", key.String(), "node", node.Name)
	return nil
}

func (b *binder) pick(pod *corev1.Pod) (*nodeState, error) {
	selector := labels.SelectorFromSet(pod.Spec.NodeSelector)
	var fit []*nodeState
	for _, n := range b.nodes {
		if selector.Matches(labels.Set(n.labels())) {
			fit = append(fit, n)
		}
	}
	if len(fit) == 0 {
		return nil, fmt.Errorf("no node matches nodeSelector %v", pod.Spec.NodeSelector)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := fit[b.next%len(fit)]
	b.next++
	return n, nil
}
