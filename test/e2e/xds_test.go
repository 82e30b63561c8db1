//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/test/xdsclient"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
	"github.com/sluice-mesh/sluice/xds/translate"
)

const grpcPort = 9090

// TestXDSLoadBalancing points grpc-go xDS clients at `sluice serve` watching
// the test cluster and checks where real RPCs land as the real controllers
// scale, fail and move the backend pods.
func TestXDSLoadBalancing(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	cp := startSluice(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	const ns = "lb"
	require.NoError(t, c.CreateNamespace(ctx, ns))
	createService(ctx, t, c, ns, "api", nil)
	createDeployment(ctx, t, c, ns, "api", "api", 3, "")
	waitReady(ctx, t, c, ns, "api", 3)

	client := newClient(t, cp, "rr-client", ns, "", "api")
	clusterName := translate.ClusterName(mesh.PortKey{Namespace: ns, Name: "api", Port: grpcPort}, translate.DefaultClusterDomain)

	t.Run("round robin spreads 3000 RPCs evenly over 3 pods", func(t *testing.T) {
		waitForPods(ctx, t, client, 3)
		counts, err := xdsclient.Spread(ctx, client, 3000)
		require.NoError(t, err)
		require.Len(t, counts, 3, counts.String())
		for pod, n := range counts {
			assert.InDelta(t, 1000, n, 150, "pod %s got %d of 3000 RPCs (33%% ± 5 points expected): %s", pod, n, counts)
		}
		t.Logf("round robin: %s", counts)
	})

	t.Run("scaling to 5 sends traffic to the new pods", func(t *testing.T) {
		scale(ctx, t, c, ns, "api", 5)
		waitReady(ctx, t, c, ns, "api", 5)
		waitForPods(ctx, t, client, 5)
		counts, err := xdsclient.Spread(ctx, client, 500)
		require.NoError(t, err)
		assert.Len(t, counts, 5, counts.String())
	})

	t.Run("scaling to 2: removed pods get nothing once the change is ACKed", func(t *testing.T) {
		scale(ctx, t, c, ns, "api", 2)
		eps := waitReady(ctx, t, c, ns, "api", 2)
		remaining := readyPods(eps)
		waitAckedEndpoints(ctx, t, cp, "rr-client."+ns, clusterName, 2)
		counts, err := xdsclient.Spread(ctx, client, 300)
		require.NoError(t, err)
		for pod := range counts {
			assert.Contains(t, remaining, pod, "an RPC landed on a removed pod after the ACK: %s", counts)
		}
	})

	t.Run("a pod that turns not ready stops receiving traffic", func(t *testing.T) {
		eps := waitReady(ctx, t, c, ns, "api", 2)
		pods := readyPods(eps)
		setPodReady(ctx, t, c, ns, pods[0], false)
		waitAckedEndpoints(ctx, t, cp, "rr-client."+ns, clusterName, 1)
		counts, err := xdsclient.Spread(ctx, client, 200)
		require.NoError(t, err)
		assert.Equal(t, xdsclient.Counts{pods[1]: 200}, counts)
		setPodReady(ctx, t, c, ns, pods[0], true)
		waitAckedEndpoints(ctx, t, cp, "rr-client."+ns, clusterName, 2)
		waitForPods(ctx, t, client, 2)
	})

	t.Run("ring hash on a header keeps each key on one pod", func(t *testing.T) {
		createService(ctx, t, c, ns, "hash", map[string]string{
			"sluice.dev/lb-policy": "ring_hash",
			"sluice.dev/hash-on":   "header:x-user",
		})
		createDeployment(ctx, t, c, ns, "hash", "hash", 3, "")
		waitReady(ctx, t, c, ns, "hash", 3)
		hc := newClient(t, cp, "hash-client", ns, "", "hash")
		waitForPods(ctx, t, hc, 1)
		hashCluster := translate.ClusterName(mesh.PortKey{Namespace: ns, Name: "hash", Port: grpcPort}, translate.DefaultClusterDomain)
		waitAckedEndpoints(ctx, t, cp, "hash-client."+ns, hashCluster, 3)
		used := map[string]bool{}
		for k := range 30 {
			kctx := metadata.AppendToOutgoingContext(ctx, "x-user", fmt.Sprintf("user-%d", k))
			counts, err := xdsclient.Spread(kctx, hc, 10)
			require.NoError(t, err)
			assert.Len(t, counts, 1, "key user-%d was spread over pods: %s", k, counts)
			for pod := range counts {
				used[pod] = true
			}
		}
		assert.GreaterOrEqual(t, len(used), 2, "30 keys all hashed to one pod: %v", used)
	})

	t.Run("a zone-a client stays in zone a and spills to zone b when zone a is gone", func(t *testing.T) {
		createService(ctx, t, c, ns, "zoned", nil)
		createDeployment(ctx, t, c, ns, "zoned-a", "zoned", 2, "node-a")
		createDeployment(ctx, t, c, ns, "zoned-b", "zoned", 2, "node-b")
		waitReady(ctx, t, c, ns, "zoned", 4)
		zc := newClient(t, cp, "zone-client", ns, "zone-a", "zoned")
		waitForPods(ctx, t, zc, 2)
		counts, err := xdsclient.Spread(ctx, zc, 300)
		require.NoError(t, err)
		for pod := range counts {
			assert.True(t, strings.HasPrefix(pod, "zoned-a-"), "zone-a client reached %s while zone a is healthy: %s", pod, counts)
		}
		scale(ctx, t, c, ns, "zoned-a", 0)
		waitReady(ctx, t, c, ns, "zoned", 2)
		require.Eventually(t, func() bool {
			counts, err := xdsclient.Spread(ctx, zc, 20)
			return err == nil && allPrefixed(counts, "zoned-b-")
		}, time.Minute, 100*time.Millisecond, "the zone-a client never spilled over to zone b")
	})
}

func allPrefixed(c xdsclient.Counts, prefix string) bool {
	for pod := range c {
		if !strings.HasPrefix(pod, prefix) {
			return false
		}
	}
	return len(c) > 0
}

// newClient dials xds:///<svc>.<ns>:9090 as a proxyless gRPC client with
// node id <name>.<ns>.
func newClient(t *testing.T, cp *controlPlane, name, ns, zone, svc string) *grpc.ClientConn {
	t.Helper()
	cc, err := xdsclient.Dial(bootstrap.Workload{Pod: name, Namespace: ns, Zone: zone, XDSAddress: cp.XDSAddress},
		fmt.Sprintf("xds:///%s.%s:%d", svc, ns, grpcPort))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// waitForPods waits until RPCs through cc reach at least n distinct pods.
func waitForPods(ctx context.Context, t *testing.T, cc *grpc.ClientConn, n int) {
	t.Helper()
	var last xdsclient.Counts
	require.Eventually(t, func() bool {
		counts, err := xdsclient.Spread(ctx, cc, 10*n, grpc.WaitForReady(true))
		last = counts
		return err == nil && len(counts) >= n
	}, 2*time.Minute, 100*time.Millisecond, "RPCs never reached %d pods; last: %s", n, last)
}

// waitAckedEndpoints waits until the proxy has ACKed an EDS response in which
// the cluster has exactly n endpoints.
func waitAckedEndpoints(ctx context.Context, t *testing.T, cp *controlPlane, proxyID, clusterName string, n int) {
	t.Helper()
	var addrs []string
	var acked bool
	var err error
	require.Eventually(t, func() bool {
		addrs, acked, err = cp.ackedEndpoints(proxyID, clusterName)
		return err == nil && acked && len(addrs) == n
	}, 2*time.Minute, 50*time.Millisecond, "proxy %s never ACKed %d endpoints of %s: last %v acked=%v err=%v", proxyID, n, clusterName, addrs, acked, err)
}

func waitReady(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, svc string, n int) []cluster.Endpoint {
	t.Helper()
	eps, err := c.WaitForEndpoints(ctx, ns, svc, func(eps []cluster.Endpoint) bool {
		return cluster.CountEndpoints(eps, cluster.Endpoint.IsReady) == n
	})
	require.NoError(t, err, "waiting for %d ready endpoints of %s/%s", n, ns, svc)
	return eps
}

func readyPods(eps []cluster.Endpoint) []string {
	var pods []string
	for _, e := range eps {
		if e.IsReady() && e.TargetRef != nil {
			pods = append(pods, e.TargetRef.Name)
		}
	}
	slices.Sort(pods)
	return pods
}

func setPodReady(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, pod string, ready bool) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, cluster.ReadyAnnotation, fmt.Sprint(ready))
	_, err := c.Client.CoreV1().Pods(ns).Patch(ctx, pod, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
}

func scale(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	_, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
}

// createService creates a Service selecting app=<name> with one gRPC port.
func createService(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string, annotations map[string]string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name: "grpc", Port: grpcPort, TargetPort: intstr.FromString("grpc"), AppProtocol: new("grpc"),
			}},
		},
	}
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
}

// createDeployment creates a Deployment of backends labelled app=<app>,
// pinned to a node when nodeName is set.
func createDeployment(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name, app string, replicas int32, nodeName string) {
	t.Helper()
	createBackends(ctx, t, c, backendSpec{namespace: ns, name: name, app: app, replicas: replicas, nodeName: nodeName})
}

// backendSpec describes a Deployment of test backends.
type backendSpec struct {
	namespace, name string
	// app labels the pods (app=<app>): what Services select.
	app      string
	replicas int32
	// nodeName pins the pods to a node; serviceAccount runs them as one.
	nodeName, serviceAccount string
}

// createBackends creates a Deployment of test backends serving gRPC on
// grpcPort, ready once their gRPC health check answers.
func createBackends(ctx context.Context, t *testing.T, c *cluster.Cluster, b backendSpec) {
	t.Helper()
	labels := map[string]string{"app": b.app, "deployment": b.name}
	replicas := b.replicas
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: b.name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:                      b.nodeName,
					ServiceAccountName:            b.serviceAccount,
					TerminationGracePeriodSeconds: new(int64(5)),
					Containers: []corev1.Container{{
						Name:  "backend",
						Image: "sluice.test/backend",
						Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: grpcPort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	_, err := c.Client.AppsV1().Deployments(b.namespace).Create(ctx, d, metav1.CreateOptions{})
	require.NoError(t, err)
}
