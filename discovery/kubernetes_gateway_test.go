package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/sluice-mesh/sluice/mesh"
)

// serveGatewayAPI makes the fake API server's discovery list the Gateway
// API resources, as if the CRDs were installed.
func serveGatewayAPI(client *fake.Clientset, mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
	d := client.Discovery().(*fakediscovery.FakeDiscovery)
	d.Resources = append(d.Resources,
		&metav1.APIResourceList{GroupVersion: "gateway.networking.k8s.io/v1", APIResources: []metav1.APIResource{
			{Name: "httproutes", Kind: "HTTPRoute", Namespaced: true},
			{Name: "grpcroutes", Kind: "GRPCRoute", Namespaced: true},
		}},
		&metav1.APIResourceList{GroupVersion: "gateway.networking.k8s.io/v1beta1", APIResources: []metav1.APIResource{
			{Name: "referencegrants", Kind: "ReferenceGrant", Namespaced: true},
		}},
	)
}

// TestKubernetesSourceRoutes runs the source with a Gateway API client:
// routes become Snapshot.Routes, status-only updates change nothing, and
// CRDs installed after start are picked up without a restart.
func TestKubernetesSourceRoutes(t *testing.T) {
	for _, installedAtStart := range []bool{true, false} {
		name := "CRDs installed at start"
		if !installedAtStart {
			name = "CRDs installed later"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			kube := fake.NewClientset(grpcService("shop", "api").obj, grpcService("shop", "api-stable").obj, grpcService("shop", "api-canary").obj)
			var discoveryMu sync.Mutex // the fake discovery is not safe for concurrent use
			if installedAtStart {
				serveGatewayAPI(kube, &discoveryMu)
			}
			route := newHTTPRoute("shop", "canary").parent("api").rule(httpRule().to("api-stable", 9090, 90).to("api-canary", 9090, 10)).obj
			gw := gatewayfake.NewClientset(route)
			store := NewStore()
			src, err := NewKubernetesSource(kube, store, KubernetesOptions{Gateway: gw, GatewayPollInterval: 20 * time.Millisecond,
				Recorder: record.NewFakeRecorder(100)})
			require.NoError(t, err)
			src.gateway.discovery = lockedDiscovery{kube.Discovery().(*fakediscovery.FakeDiscovery), &discoveryMu}
			updates := make(chan Update, 10)
			c := NewCoalescer(store, ConsumerFunc(func(_ context.Context, u Update) { updates <- u }), CoalescerOptions{
				HoldOff: time.Millisecond, MaxDelay: 10 * time.Millisecond,
			})
			go func() { _ = src.Run(ctx) }()
			go func() { _ = c.Run(ctx) }()
			next := func() Update {
				t.Helper()
				select {
				case u := <-updates:
					return u
				case <-time.After(10 * time.Second):
					t.Fatal("no update")
					return Update{}
				}
			}
			api := portKey("shop", "api", 9090)
			u := next()
			if !installedAtStart {
				assert.Nil(t, u.Snapshot.Routes, "without the CRDs there are no routes, and Sluice is ready anyway")
				serveGatewayAPI(kube, &discoveryMu)
				u = next()
			}
			require.Contains(t, u.Snapshot.Routes, api)
			assert.Equal(t, []mesh.PortKey{api}, u.ChangedRoutes)
			assert.False(t, u.EndpointsOnly)

			// A status write is not a change; a spec change is.
			route.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: serviceParent("api"), ControllerName: ControllerName}}
			_, err = gw.GatewayV1().HTTPRoutes("shop").UpdateStatus(ctx, route, metav1.UpdateOptions{})
			require.NoError(t, err)
			route.Spec.Rules[0].BackendRefs[0].Weight = new(int32(50))
			route.Generation = 2
			_, err = gw.GatewayV1().HTTPRoutes("shop").Update(ctx, route, metav1.UpdateOptions{})
			require.NoError(t, err)
			u = next()
			assert.Equal(t, uint32(50), u.Snapshot.Routes[api].Rules[0].Backends[0].Weight)
			select {
			case u := <-updates:
				t.Fatalf("an extra update: %+v", u)
			case <-time.After(100 * time.Millisecond):
			}
			require.NoError(t, gw.GatewayV1().HTTPRoutes("shop").Delete(ctx, "canary", metav1.DeleteOptions{}))
			u = next()
			assert.Nil(t, u.Snapshot.Routes)
		})
	}
}

// lockedDiscovery serialises the fake discovery with the test's changes.
type lockedDiscovery struct {
	*fakediscovery.FakeDiscovery
	mu *sync.Mutex
}

func (d lockedDiscovery) ServerResourcesForGroupVersionWithContext(ctx context.Context, gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerResourcesForGroupVersionWithContext(ctx, gv)
}
