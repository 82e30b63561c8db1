package cluster

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Endpoint is one endpoint of a Service's EndpointSlices with the slice's
// ports.
type Endpoint struct {
	discoveryv1.Endpoint
	Slice string
	Ports []discoveryv1.EndpointPort
}

// IsReady, IsServing and IsTerminating read the endpoint's conditions
// (unset counts as false).
func (e Endpoint) IsReady() bool       { return deref(e.Conditions.Ready) }
func (e Endpoint) IsServing() bool     { return deref(e.Conditions.Serving) }
func (e Endpoint) IsTerminating() bool { return deref(e.Conditions.Terminating) }

// CountEndpoints counts the endpoints for which f holds, e.g.
// CountEndpoints(eps, Endpoint.IsReady).
func CountEndpoints(eps []Endpoint, f func(Endpoint) bool) int {
	n := 0
	for _, e := range eps {
		if f(e) {
			n++
		}
	}
	return n
}

// ServiceEndpoints lists the endpoints of all EndpointSlices of a Service.
func (c *Cluster) ServiceEndpoints(ctx context.Context, namespace, service string) ([]Endpoint, error) {
	slices, err := c.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service,
	})
	if err != nil {
		return nil, fmt.Errorf("list EndpointSlices of %s/%s: %w", namespace, service, err)
	}
	var eps []Endpoint
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			eps = append(eps, Endpoint{Endpoint: e, Slice: s.Name, Ports: s.Ports})
		}
	}
	return eps, nil
}

// WaitForEndpoints polls a Service's endpoints until ok accepts them, and
// returns them.
func (c *Cluster) WaitForEndpoints(ctx context.Context, namespace, service string, ok func([]Endpoint) bool) ([]Endpoint, error) {
	var last []Endpoint
	var lastErr error
	err := poll(ctx, func(ctx context.Context) bool {
		last, lastErr = c.ServiceEndpoints(ctx, namespace, service)
		return lastErr == nil && ok(last)
	})
	if err != nil {
		return last, fmt.Errorf("endpoints of %s/%s: %w (last error: %v; last endpoints: %s)", namespace, service, err, lastErr, FormatEndpoints(last))
	}
	return last, nil
}

// WaitForRollout waits until a Deployment has fully rolled out: its latest
// generation observed, every replica updated, ready and available, and no
// pods of older revisions left.
func (c *Cluster) WaitForRollout(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	var d *appsv1.Deployment
	var lastErr error
	err := poll(ctx, func(ctx context.Context) bool {
		d, lastErr = c.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if lastErr != nil {
			return false
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		done := st.ObservedGeneration >= d.Generation && st.Replicas == want && st.UpdatedReplicas == want &&
			st.ReadyReplicas == want && st.AvailableReplicas == want
		if !done {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			lastErr = err
			return false
		}
		pods, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			lastErr = err
			return false
		}
		return len(pods.Items) == int(want)
	})
	if err != nil {
		status := "unknown"
		if d != nil {
			status = fmt.Sprintf("%+v", d.Status)
		}
		return d, fmt.Errorf("rollout of deployment %s/%s: %w (last error: %v; status: %s)", namespace, name, err, lastErr, status)
	}
	return d, nil
}

// FormatEndpoints renders endpoints compactly for test messages:
// address(pod@zone ready/serving/terminating).
func FormatEndpoints(eps []Endpoint) string {
	s := "["
	for i, e := range eps {
		if i > 0 {
			s += " "
		}
		pod, zone := "?", "?"
		if e.TargetRef != nil {
			pod = e.TargetRef.Name
		}
		if e.Zone != nil {
			zone = *e.Zone
		}
		s += fmt.Sprintf("%v(%s@%s r=%v s=%v t=%v)", e.Addresses, pod, zone, e.IsReady(), e.IsServing(), e.IsTerminating())
	}
	return s + "]"
}

func deref(b *bool) bool { return b != nil && *b }

// poll calls cond every 100ms until it returns true or ctx ends.
func poll(ctx context.Context, cond func(context.Context) bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
