//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-mesh/sluice/test/backend"
	"github.com/sluice-mesh/sluice/test/cluster"
)

// TestSmoke proves the test cluster: a Deployment and a Service become
// pods with real backends on pod IPs and an EndpointSlice with ready, zoned
// endpoints; readiness follows the test kubelet's probes; a rolling update
// replaces every pod while the EndpointSlice shows the old ones serving and
// terminating; and Stop leaves no process behind.
func TestSmoke(t *testing.T) {
	begin := time.Now()
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	const ns, name = "smoke", "echo"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, smokeService(name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, smokeDeployment(name, "v1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	eps, err := c.WaitForEndpoints(ctx, ns, name, func(eps []cluster.Endpoint) bool {
		return len(eps) == 3 && cluster.CountEndpoints(eps, cluster.Endpoint.IsReady) == 3
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3 ready endpoints %v after start: %s", time.Since(begin).Round(time.Millisecond), cluster.FormatEndpoints(eps))
	v1Pods := checkEndpointsAnswer(ctx, t, c, ns, eps, "v1")

	t.Run("readiness follows the annotation", func(t *testing.T) {
		pod := eps[0].TargetRef.Name
		setReadyAnnotation(ctx, t, c, ns, pod, `"false"`)
		if _, err := c.WaitForEndpoints(ctx, ns, name, func(eps []cluster.Endpoint) bool {
			e := endpointOf(eps, pod)
			return e != nil && !e.IsReady() && !e.IsServing() && !e.IsTerminating() && cluster.CountEndpoints(eps, cluster.Endpoint.IsReady) == 2
		}); err != nil {
			t.Fatal(err)
		}
		setReadyAnnotation(ctx, t, c, ns, pod, "null")
		if _, err := c.WaitForEndpoints(ctx, ns, name, func(eps []cluster.Endpoint) bool {
			return cluster.CountEndpoints(eps, cluster.Endpoint.IsReady) == 3
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("rolling update", func(t *testing.T) {
		var sawServingTerminating atomic.Bool
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go watchEndpointSlices(watchCtx, c, ns, name, func(e discoveryv1.Endpoint) {
			if ep := (cluster.Endpoint{Endpoint: e}); ep.IsServing() && ep.IsTerminating() && !ep.IsReady() {
				sawServingTerminating.Store(true)
			}
		})

		rollStart := time.Now()
		patch := []byte(`{"spec":{"template":{"metadata":{"labels":{"version":"v2"}}}}}`)
		if _, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitForRollout(ctx, ns, name); err != nil {
			t.Fatal(err)
		}
		eps, err := c.WaitForEndpoints(ctx, ns, name, func(eps []cluster.Endpoint) bool {
			return len(eps) == 3 && cluster.CountEndpoints(eps, cluster.Endpoint.IsReady) == 3 && cluster.CountEndpoints(eps, cluster.Endpoint.IsTerminating) == 0
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rolled out in %v: %s", time.Since(rollStart).Round(time.Millisecond), cluster.FormatEndpoints(eps))
		v2Pods := checkEndpointsAnswer(ctx, t, c, ns, eps, "v2")
		for pod := range v2Pods {
			if v1Pods[pod] != "" {
				t.Errorf("pod %s survived the rolling update", pod)
			}
		}
		if !sawServingTerminating.Load() {
			t.Error("no EndpointSlice showed an endpoint serving and terminating during the rolling update")
		}
		// The old backends are gone with their pods.
		for _, ip := range v1Pods {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second); err == nil {
				conn.Close()
				t.Errorf("old pod IP %s still answers", ip)
			}
		}
	})

	t.Run("stop leaves no process", func(t *testing.T) {
		pids := c.PIDs()
		if len(pids) != 3 {
			t.Fatalf("cluster has %d processes, want 3", len(pids))
		}
		if err := c.ProcessesGone(); err == nil {
			t.Fatal("ProcessesGone reports a running cluster as gone")
		}
		eps, err := c.ServiceEndpoints(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.ProcessesGone(); err != nil {
			t.Error(err)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
			}
		}
		for _, e := range eps {
			addr := net.JoinHostPort(e.Addresses[0], "9090")
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				t.Errorf("backend %s still answers after Stop", addr)
			}
		}
	})
	t.Logf("smoke test took %v", time.Since(begin).Round(time.Millisecond))
}

func smokeService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{
				{Name: "grpc", Port: 9090, TargetPort: intstr.FromString("grpc")},
				{Name: "http", Port: 8080, TargetPort: intstr.FromString("http")},
			},
		},
	}
}

// smokeDeployment runs 3 backends, rolled one at a time (a new pod is ready
// before an old one goes); each old pod's preStop hook keeps it terminating
// for two seconds while it still serves.
func smokeDeployment(name, version string) *appsv1.Deployment {
	labels := map[string]string{"app": name, "version": version}
	maxSurge, maxUnavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &maxSurge, MaxUnavailable: &maxUnavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64(10)),
					Containers: []corev1.Container{{
						Name:  "echo",
						Image: "sluice.test/echo",
						Ports: []corev1.ContainerPort{
							{Name: "grpc", ContainerPort: 9090},
							{Name: "http", ContainerPort: 8080},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
							HTTPGet: &corev1.HTTPGetAction{Path: "/sleep/2s", Port: intstr.FromString("http")},
						}},
					}},
				},
			},
		},
	}
}

// checkEndpointsAnswer checks that every endpoint belongs to a running pod
// of the Service in the zone of its node, and that the pod's backend answers
// on the endpoint's address over gRPC and HTTP with its own name, zone and
// version. It returns pod name -> IP.
func checkEndpointsAnswer(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string, eps []cluster.Endpoint, version string) map[string]string {
	t.Helper()
	podNet := netip.MustParsePrefix(cluster.PodNetworkCIDR)
	ips := map[string]string{}
	for _, e := range eps {
		if e.TargetRef == nil || len(e.Addresses) != 1 || e.NodeName == nil || e.Zone == nil {
			t.Fatalf("endpoint without pod, single address, node or zone: %+v", e)
		}
		podName, ip := e.TargetRef.Name, e.Addresses[0]
		pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Status.PodIP != ip || !podNet.Contains(netip.MustParseAddr(ip)) {
			t.Errorf("endpoint %s of pod %s: pod IP is %s, pod network %s", ip, podName, pod.Status.PodIP, podNet)
		}
		zone := c.Kubelet.NodeZone(pod.Spec.NodeName)
		if *e.NodeName != pod.Spec.NodeName || *e.Zone != zone || zone == "" {
			t.Errorf("endpoint of pod %s: node %s zone %s, pod runs on %s in zone %q", podName, *e.NodeName, *e.Zone, pod.Spec.NodeName, zone)
		}
		if pod.Status.HostIP != c.Kubelet.NodeIP(pod.Spec.NodeName) {
			t.Errorf("pod %s: hostIP %s, want node IP %s", podName, pod.Status.HostIP, c.Kubelet.NodeIP(pod.Spec.NodeName))
		}
		want := backend.Identity{Pod: podName, Namespace: ns, Zone: zone, Version: version}
		if got, err := whoGRPC(ctx, net.JoinHostPort(ip, "9090")); err != nil || got != want {
			t.Errorf("gRPC %s:9090 = %+v, %v; want %+v", ip, got, err, want)
		}
		url := "http://" + net.JoinHostPort(ip, "8080") + "/"
		if got, err := backend.WhoHTTP(ctx, http.DefaultClient, url); err != nil || got != want {
			t.Errorf("HTTP %s = %+v, %v; want %+v", url, got, err, want)
		}
		ips[podName] = ip
	}
	if len(ips) != len(eps) {
		t.Errorf("endpoints %s name %d distinct pods, want %d", cluster.FormatEndpoints(eps), len(ips), len(eps))
	}
	return ips
}

// whoGRPC dials addr (a pod IP and port) and asks who answers.
func whoGRPC(ctx context.Context, addr string) (backend.Identity, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return backend.Identity{}, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return backend.WhoGRPC(ctx, cc)
}

func setReadyAnnotation(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, pod, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, cluster.ReadyAnnotation, value)
	if _, err := c.Client.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// watchEndpointSlices calls seen for every endpoint of every version of the
// Service's EndpointSlices until ctx ends.
func watchEndpointSlices(ctx context.Context, c *cluster.Cluster, ns, service string, seen func(discoveryv1.Endpoint)) {
	for ctx.Err() == nil {
		w, err := c.Client.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if s, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
				for _, e := range s.Endpoints {
					seen(e)
				}
			}
		}
		w.Stop()
	}
}

func endpointOf(eps []cluster.Endpoint, pod string) *cluster.Endpoint {
	for i := range eps {
		if eps[i].TargetRef != nil && eps[i].TargetRef.Name == pod {
			return &eps[i]
		}
	}
	return nil
}
