package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ReadyAnnotation on a pod set to "false" makes the test kubelet report the
// pod not ready whatever its probes say, so tests can flip readiness.
const ReadyAnnotation = "test.sluice.dev/ready"

// Kubelet is the test kubelet: it registers its Nodes, binds unscheduled
// Pods to them (a minimal scheduler), and runs every Pod bound to them as a
// real backend on the Pod's IP, reporting status like a kubelet does. Node
// heartbeats are not sent; the cluster runs without the node lifecycle
// controller, so the Nodes stay Ready.
type Kubelet struct {
	client kubernetes.Interface
	nodes  map[string]*nodeState
	order  []*nodeState
	log    *slog.Logger
	// subnets are the pod subnets of the nodes, returned to the pool by Stop.
	subnets []byte

	cancel  context.CancelFunc
	factory informers.SharedInformerFactory
	binder  *binder

	mu       sync.Mutex
	stopped  bool
	workers  map[types.UID]*podWorker
	finished map[types.UID]bool // pods whose worker is done; late events for them are ignored
	wg       sync.WaitGroup
}

// NewKubelet returns a test kubelet for nodes; Start runs it.
func NewKubelet(client kubernetes.Interface, nodes []Node, log *slog.Logger) (*Kubelet, error) {
	octets, err := subnets.take(len(nodes))
	if err != nil {
		return nil, err
	}
	states, err := newNodeStates(nodes, octets)
	if err != nil {
		subnets.give(octets)
		return nil, err
	}
	k := &Kubelet{
		client:   client,
		subnets:  octets,
		nodes:    map[string]*nodeState{},
		order:    states,
		log:      log,
		workers:  map[types.UID]*podWorker{},
		finished: map[types.UID]bool{},
	}
	for _, n := range states {
		k.nodes[n.Name] = n
	}
	return k, nil
}

// Start registers the nodes and starts watching pods. ctx bounds only the
// start; the kubelet runs until Stop.
func (k *Kubelet) Start(ctx context.Context) error {
	for _, n := range k.order {
		if err := k.registerNode(ctx, n); err != nil {
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.factory = informers.NewSharedInformerFactory(k.client, 0)
	pods := k.factory.Core().V1().Pods()
	k.binder = newBinder(k.client, pods.Lister(), k.order, k.log)
	_, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.onPod(runCtx, obj) },
		UpdateFunc: func(_, obj any) { k.onPod(runCtx, obj) },
		DeleteFunc: k.onPodDeleted,
	})
	if err != nil {
		return fmt.Errorf("test kubelet: watch pods: %w", err)
	}
	k.factory.Start(runCtx.Done())
	for typ, ok := range k.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("test kubelet: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	k.wg.Go(func() { k.binder.run(runCtx) })
	return nil
}

// Stop stops every backend at once and stops watching. Pods keep their last
// status: the cluster is going away. The kubelet cannot be started again.
func (k *Kubelet) Stop() {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	if k.cancel != nil {
		k.cancel()
	}
	if k.binder != nil {
		k.binder.queue.ShutDown()
	}
	k.wg.Wait()
	if k.factory != nil {
		k.factory.Shutdown()
	}
	subnets.give(k.subnets)
	k.subnets = nil
}

// NodeIP is the InternalIP of a node, "" for an unknown node.
func (k *Kubelet) NodeIP(node string) string {
	if n := k.nodes[node]; n != nil {
		return n.ip.String()
	}
	return ""
}

// NodeZone is the zone of a node, "" for an unknown node.
func (k *Kubelet) NodeZone(node string) string {
	if n := k.nodes[node]; n != nil {
		return n.Zone
	}
	return ""
}

func (k *Kubelet) registerNode(ctx context.Context, n *nodeState) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.labels()},
		Spec:       corev1.NodeSpec{PodCIDR: n.podCIDR.String(), PodCIDRs: []string{n.podCIDR.String()}},
	}
	created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = k.client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("test kubelet: register node %s: %w", n.Name, err)
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "sluice test kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.ip.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.37.2-sluice-test", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "sluice-test://1",
		},
	}
	if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("test kubelet: set status of node %s: %w", n.Name, err)
	}
	return nil
}

func (k *Kubelet) onPod(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName == "" {
		k.binder.enqueue(pod)
		return
	}
	node := k.nodes[pod.Spec.NodeName]
	if node == nil {
		return
	}
	k.mu.Lock()
	w := k.workers[pod.UID]
	if w == nil {
		if k.stopped || k.finished[pod.UID] || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			k.mu.Unlock()
			return
		}
		w = newPodWorker(k.client, node, pod, k.log)
		k.workers[pod.UID] = w
		k.wg.Go(func() {
			w.run(ctx)
			k.mu.Lock()
			delete(k.workers, pod.UID)
			k.finished[pod.UID] = true
			k.mu.Unlock()
		})
	}
	k.mu.Unlock()
	w.update(pod)
}

func (k *Kubelet) onPodDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	w := k.workers[pod.UID]
	k.mu.Unlock()
	if w != nil {
		w.removed()
	}
}
