package load

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// KubeWriter writes the world into an API server: Namespaces, Nodes,
// ServiceAccounts, Services without selectors, Pods (created, then given a
// Running and Ready status with their IP, as a kubelet would) and one
// EndpointSlice per service, written directly so that no controller delay
// blurs the figures.
type KubeWriter struct {
	Client     kubernetes.Interface
	Gateway    gatewayclient.Interface
	Kubeconfig string
	// Workers bounds concurrent writes while creating services.
	Workers int

	locks  serviceLocks
	mu     sync.Mutex
	slices map[string]*discoveryv1.EndpointSlice
}

var _ Writer = (*KubeWriter)(nil)

// SystemNamespace is where `sluice serve` keeps its own objects (leader
// lease, CA Secret); Setup creates it as a deployment would.
const SystemNamespace = "sluice-system"

// Setup creates the namespaces (waiting for their default ServiceAccount),
// Sluice's own namespace and the nodes.
func (k *KubeWriter) Setup(ctx context.Context, w *World) error {
	_, err := k.Client.CoreV1().Namespaces().Create(ctx, namespaceObject(SystemNamespace), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", SystemNamespace, err)
	}
	for _, ns := range w.Namespaces {
		_, err := k.Client.CoreV1().Namespaces().Create(ctx, namespaceObject(ns), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	for _, z := range zones {
		_, err := k.Client.CoreV1().Nodes().Create(ctx, nodeObject(z.node, z.zone), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", z.node, err)
		}
	}
	for _, ns := range w.Namespaces {
		if err := k.waitDefaultServiceAccount(ctx, ns); err != nil {
			return err
		}
	}
	return nil
}

func (k *KubeWriter) waitDefaultServiceAccount(ctx context.Context, ns string) error {
	for {
		_, err := k.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if err := sleep(ctx, 50e6); err != nil {
			return fmt.Errorf("namespace %s: no default ServiceAccount: %w", ns, err)
		}
	}
}

// CreateServices creates services, their pods and slices, Workers at a time.
func (k *KubeWriter) CreateServices(ctx context.Context, w *World, svcs []*Service) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(k.Workers, 1))
	for _, s := range svcs {
		g.Go(func() error { return k.createService(gctx, w, s) })
	}
	return g.Wait()
}

func (k *KubeWriter) createService(ctx context.Context, w *World, s *Service) error {
	defer k.locks.lock(s.Key())()
	if s.ServiceAccount != "default" {
		_, err := k.Client.CoreV1().ServiceAccounts(s.Namespace).Create(ctx, serviceAccountObject(s.Namespace, s.ServiceAccount), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create service account %s/%s: %w", s.Namespace, s.ServiceAccount, err)
		}
	}
	for _, p := range s.Pods {
		if err := k.createPod(ctx, s, p); err != nil {
			return err
		}
	}
	svc, err := k.Client.CoreV1().Services(s.Namespace).Create(ctx, serviceObject(s, false), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s: %w", s.Key(), err)
	}
	w.SetClusterIP(s, svc.Spec.ClusterIP)
	es, err := k.Client.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, sliceObject(s), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create endpoint slice %s: %w", s.Key(), err)
	}
	k.setSlice(s, es)
	return nil
}

// createPod creates the pod, then writes its status.
func (k *KubeWriter) createPod(ctx context.Context, s *Service, p *Pod) error {
	want := podObject(s, p)
	created, err := k.Client.CoreV1().Pods(s.Namespace).Create(ctx, want, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", s.Namespace, p.Name, err)
	}
	created.Status = want.Status
	if _, err := k.Client.CoreV1().Pods(s.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", s.Namespace, p.Name, err)
	}
	return nil
}

// UpdateEndpoints rewrites the slice.
func (k *KubeWriter) UpdateEndpoints(ctx context.Context, _ *World, s *Service) error {
	defer k.locks.lock(s.Key())()
	return k.updateSlice(ctx, s)
}

func (k *KubeWriter) updateSlice(ctx context.Context, s *Service) error {
	k.mu.Lock()
	cur := k.slices[s.Key()]
	k.mu.Unlock()
	want := sliceObject(s)
	if cur != nil {
		want.ResourceVersion = cur.ResourceVersion
	}
	es, err := k.Client.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, want, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update endpoint slice %s: %w", s.Key(), err)
	}
	k.setSlice(s, es)
	return nil
}

// RestartPod deletes the old pod, creates the new one and rewrites the
// slice; the slice update is the write changes are timed from.
func (k *KubeWriter) RestartPod(ctx context.Context, _ *World, s *Service, old, repl *Pod) error {
	defer k.locks.lock(s.Key())()
	err := k.Client.CoreV1().Pods(s.Namespace).Delete(ctx, old.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", s.Namespace, old.Name, err)
	}
	if err := k.createPod(ctx, s, repl); err != nil {
		return err
	}
	return k.updateSlice(ctx, s)
}

// DeleteService deletes the slice, the service, its pods and its service
// account.
func (k *KubeWriter) DeleteService(ctx context.Context, _ *World, s *Service) error {
	defer k.locks.lock(s.Key())()
	del := metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}
	ignore := func(err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := ignore(k.Client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, del)); err != nil {
		return fmt.Errorf("delete endpoint slice %s: %w", s.Key(), err)
	}
	if err := ignore(k.Client.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, del)); err != nil {
		return fmt.Errorf("delete service %s: %w", s.Key(), err)
	}
	for _, p := range s.Pods {
		if err := ignore(k.Client.CoreV1().Pods(s.Namespace).Delete(ctx, p.Name, del)); err != nil {
			return fmt.Errorf("delete pod %s/%s: %w", s.Namespace, p.Name, err)
		}
	}
	if s.ServiceAccount != "default" {
		if err := ignore(k.Client.CoreV1().ServiceAccounts(s.Namespace).Delete(ctx, s.ServiceAccount, del)); err != nil {
			return fmt.Errorf("delete service account %s/%s: %w", s.Namespace, s.ServiceAccount, err)
		}
	}
	k.mu.Lock()
	delete(k.slices, s.Key())
	k.mu.Unlock()
	return nil
}

// SetRoute creates the HTTPRoute or updates its spec (Sluice writes its
// status meanwhile, so the update reads the latest version first and
// retries on a conflict).
func (k *KubeWriter) SetRoute(ctx context.Context, _ *World, r *Route) error {
	want := httpRouteObject(r)
	routes := k.Gateway.GatewayV1().HTTPRoutes(want.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := routes.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = routes.Create(ctx, want, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Spec = want.Spec
		_, err = routes.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("write HTTPRoute %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// DeleteRoute deletes the HTTPRoute.
func (k *KubeWriter) DeleteRoute(ctx context.Context, _ *World, r *Route) error {
	obj := httpRouteObject(r)
	err := k.Gateway.GatewayV1().HTTPRoutes(obj.Namespace).Delete(ctx, obj.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete HTTPRoute %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

// Source is --kubeconfig.
func (k *KubeWriter) Source() []string { return []string{"--kubeconfig", k.Kubeconfig} }

func (k *KubeWriter) setSlice(s *Service, es *discoveryv1.EndpointSlice) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.slices == nil {
		k.slices = map[string]*discoveryv1.EndpointSlice{}
	}
	k.slices[s.Key()] = es
}
