//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/test/xdsclient"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// TestBadInput feeds the control plane objects it cannot use as written and
// checks each gets a clear report (a Warning Event, /debug/problems, a
// metric) while every other service keeps its config and traffic.
func TestBadInput(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	cp := startSluice(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()

	const ns = "bad"
	require.NoError(t, c.CreateNamespace(ctx, ns))
	createService(ctx, t, c, ns, "good", nil)
	createDeployment(ctx, t, c, ns, "good", "good", 2, "")
	waitReady(ctx, t, c, ns, "good", 2)
	good := newClient(t, cp, "good-client", ns, "", "good")
	waitForPods(ctx, t, good, 2)

	// A headless Service without ports.
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "noports"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "none"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// Invalid annotation values.
	createService(ctx, t, c, ns, "badlb", map[string]string{
		"sluice.dev/lb-policy":       "fastest",
		"sluice.dev/connect-timeout": "soon",
	})
	// An EndpointSlice for a Service that does not exist.
	_, err = c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, endpointSlice("ghost-1", "ghost", 0, 3), metav1.CreateOptions{})
	require.NoError(t, err)

	for _, want := range []struct{ object, reason string }{
		{"Service/noports", "NoPorts"},
		{"Service/badlb", "InvalidAnnotation"},
	} {
		waitForEvent(ctx, t, c, ns, want.object, want.reason)
	}
	problems := waitForProblems(ctx, t, cp, "NoPorts", "InvalidAnnotation", "UnknownService")
	t.Logf("/debug/problems: %s", problems)
	assertMetric(t, cp, `sluice_discovery_problems{reason="InvalidAnnotation"}`)

	t.Run("the service with bad annotations is served with defaults", func(t *testing.T) {
		createDeployment(ctx, t, c, ns, "badlb", "badlb", 2, "")
		waitReady(ctx, t, c, ns, "badlb", 2)
		cc := newClient(t, cp, "badlb-client", ns, "", "badlb")
		waitForPods(ctx, t, cc, 2)
	})

	t.Run("a 10,000-endpoint service is served and the others keep working", func(t *testing.T) {
		createSelectorlessService(ctx, t, c, ns, "huge")
		for i := range 10 {
			_, err := c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, endpointSlice(fmt.Sprintf("huge-%d", i), "huge", i*1000, 1000), metav1.CreateOptions{})
			require.NoError(t, err)
		}
		clusterName := translate.ClusterName(mesh.PortKey{Namespace: ns, Name: "huge", Port: grpcPort}, translate.DefaultClusterDomain)
		var got int
		require.Eventually(t, func() bool {
			got = countEndpointsOverADS(ctx, t, cp.XDSAddress, clusterName)
			return got == 10000
		}, 2*time.Minute, 500*time.Millisecond, "EDS for %s never held 10,000 endpoints (last %d)", clusterName, got)
		counts, err := xdsclient.Spread(ctx, good, 100)
		require.NoError(t, err)
		assert.Len(t, counts, 2, counts.String())
	})

	t.Run("the control plane is still healthy", func(t *testing.T) {
		assert.Equal(t, http.StatusOK, httpStatus(cp.DebugURL+"/healthz"))
		assert.Equal(t, http.StatusOK, httpStatus(cp.DebugURL+"/readyz"))
		counts, err := xdsclient.Spread(ctx, good, 100)
		require.NoError(t, err)
		assert.Equal(t, 100, counts.Total())
	})
}

// endpointSlice returns a slice of n ready endpoints 10.250.x.y (never
// dialled) for service, starting at the first-th address.
func endpointSlice(name, service string, first, n int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("grpc"), Port: new(int32(grpcPort))}},
	}
	for i := first; i < first+n; i++ {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.250.%d.%d", i/250, i%250+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
			Zone:       new("zone-a"),
		})
	}
	return s
}

func createSelectorlessService(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "grpc", Port: grpcPort, AppProtocol: new("grpc"),
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// countEndpointsOverADS asks for one cluster's endpoints over a raw ADS
// stream, as a gRPC client would, and counts them.
func countEndpointsOverADS(ctx context.Context, t *testing.T, addr, clusterName string) int {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	require.NoError(t, err)
	defer conn.Close()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&discoverygrpc.DiscoveryRequest{
		Node:          &corev3.Node{Id: "ads-probe", UserAgentName: "probe"},
		TypeUrl:       resourcev3.EndpointType,
		ResourceNames: []string{clusterName},
	}))
	resp, err := stream.Recv()
	if err != nil {
		t.Logf("ADS probe: %v", err)
		return -1
	}
	n := 0
	for _, r := range resp.GetResources() {
		var cla endpointv3.ClusterLoadAssignment
		require.NoError(t, r.UnmarshalTo(&cla))
		for _, loc := range cla.GetEndpoints() {
			n += len(loc.GetLbEndpoints())
		}
	}
	return n
}

// waitForEvent waits for a Warning Event with the reason on the object
// ("Kind/name").
func waitForEvent(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, object, reason string) {
	t.Helper()
	kind, name, _ := strings.Cut(object, "/")
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name, "reason": reason}.AsSelector().String()
	require.Eventually(t, func() bool {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		return err == nil && len(evs.Items) > 0 && evs.Items[0].Type == corev1.EventTypeWarning
	}, time.Minute, 100*time.Millisecond, "no Warning Event %s on %s", reason, object)
}

// waitForProblems waits until /debug/problems lists every reason and returns it.
func waitForProblems(ctx context.Context, t *testing.T, cp *controlPlane, reasons ...string) string {
	t.Helper()
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(cp.DebugURL + "/debug/problems")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		for _, r := range reasons {
			if !strings.Contains(body, r) {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "/debug/problems lacks some of %v: %s", reasons, body)
	return body
}

func assertMetric(t *testing.T, cp *controlPlane, series string) {
	t.Helper()
	resp, err := http.Get(cp.DebugURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(b), series)
}
