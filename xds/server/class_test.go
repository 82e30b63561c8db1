package server

import (
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// classSnapshot exercises what translation reads of a proxy: services in
// two namespaces (short names), locality-aware balancing over two zones,
// HTTP, gRPC and TCP ports, and endpoints at the Envoy proxy's IP (its
// inbound listener).
func classSnapshot() *mesh.Snapshot {
	web := service("default", "web", 8080).withEndpoints(8080, "10.0.0.1", "10.0.0.2")
	web.svc.Ports = []mesh.Port{{Name: "http", Port: 8080, Protocol: mesh.ProtocolHTTP}, {Name: "tcp-db", Port: 5432, Protocol: mesh.ProtocolTCP}}
	web.svc.ClusterIPs = []string{"10.96.0.10"}
	web.svc.LB = mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "x-user"}, LocalityAware: true, ConnectTimeout: time.Second}
	web.eps = append(web.eps, mesh.Endpoint{Address: "10.0.1.1", Port: 8080, Zone: "b", Health: mesh.Healthy})
	api := service("other", "api", 9090).withEndpoints(9090, "10.0.0.3")
	api.svc.ClusterIPs = []string{"10.96.0.11"}
	api.svc.LB.LocalityAware = true
	snap := snapshotOf(web, api)
	eps := snap.Endpoints[mesh.PortKey{Namespace: "default", Name: "web", Port: 8080}]
	snap.Endpoints[mesh.PortKey{Namespace: "default", Name: "web", Port: 5432}] = []mesh.Endpoint{{Address: eps[0].Address, Port: 5432, Zone: "a", Health: mesh.Healthy}}
	return snap
}

// TestTranslationIgnoresOutOfClassAttributes checks, with the real
// translator, what the server's sharing relies on: full translation depends
// on no proxy attribute outside classKey (service account, pod, id), and
// Endpoints only on the kind and zone (endpointClassOf), and equals the EDS
// of Translate. If translation starts to use an attribute, add it to
// classKey (and endpointClassOf) and change this test.
func TestTranslationIgnoresOutOfClassAttributes(t *testing.T) {
	snap := classSnapshot()
	for _, opts := range []translate.Options{{}, {TrustDomain: "cluster.local"}} {
		checkClassAttributes(t, snap, opts)
	}
	// And the endpoint class is coarser than the class, never finer.
	k := classKey{kind: mesh.ProxyEnvoy, namespace: "ns", zone: "a", ip: "10.0.0.1", mtls: true}
	if ek, _ := endpointClassOf(k); ek.kind != k.kind || ek.zone != k.zone || ek.namespace != "" || ek.ip != "" || ek.mtls {
		t.Errorf("endpoint class of %v = %v", k, ek)
	}
}

func checkClassAttributes(t *testing.T, snap *mesh.Snapshot, opts translate.Options) {
	sortedEq := func(t *testing.T, what string, a, b []types.Resource) {
		t.Helper()
		if diff := cmp.Diff(a, b, protocmp.Transform()); diff != "" {
			t.Errorf("%s differ (-a +b):\n%s", what, diff)
		}
	}
	for _, kind := range []mesh.ProxyKind{mesh.ProxyEnvoy, mesh.ProxyGRPC} {
		for _, zone := range []string{"a", "b", ""} {
			base := mesh.Proxy{ID: "p1", Kind: kind, Namespace: "default", Pod: "web-1", ServiceAccount: "web", IP: "10.0.0.1", Zone: zone}
			variant := base
			variant.ID, variant.Pod, variant.ServiceAccount = "p2", "web-2", "other-account"
			ra := translate.Translate(snap, &base, opts)
			rb := translate.Translate(snap, &variant, opts)
			for typ := range ra.Resources {
				sortedEq(t, string(kind)+" zone "+zone+" "+shortType(typ), ra.Resources[typ], rb.Resources[typ])
			}
			_, ep := endpointClassOf(classKey{kind: kind, namespace: base.Namespace, zone: zone, ip: base.IP})
			eds := translate.Endpoints(snap, &ep, opts)
			sortedEq(t, string(kind)+" zone "+zone+" EDS of Translate and of the endpoint class", ra.Resources[resourcev3.EndpointType], eds)
			for _, p := range []mesh.Proxy{
				{ID: "x", Kind: kind, Namespace: "other", IP: "10.0.0.3", Zone: zone},
				{ID: "y", Kind: kind, Namespace: "default", Pod: "web-9", ServiceAccount: "sa", IP: "10.9.9.9", Zone: zone, MTLS: true},
			} {
				sortedEq(t, string(kind)+" zone "+zone+" EDS for "+p.ID, eds, translate.Endpoints(snap, &p, opts))
			}
		}
	}
}

func TestClassesIgnoreServiceAccount(t *testing.T) {
	a := mesh.Proxy{ID: "a", Kind: mesh.ProxyGRPC, Namespace: "ns", ServiceAccount: "one", Zone: "z"}
	b := a
	b.ID, b.ServiceAccount = "b", "two"
	ka, pa := classOf(a)
	if kb, _ := classOf(b); ka != kb {
		t.Errorf("gRPC clients differing in service account are in classes %v and %v", ka, kb)
	}
	if pa.ServiceAccount != "" {
		t.Errorf("class proxy %+v carries the service account", pa)
	}
}

// TestEndpointInputsCaptureTheIP checks, with the real translator, what
// address twins rely on: Envoy proxies that differ only in IP and have
// equal translate.EndpointInputs get equal resources, with and without
// mutual TLS.
func TestEndpointInputsCaptureTheIP(t *testing.T) {
	snap := classSnapshot()
	web := mesh.PortKey{Namespace: "default", Name: "web", Port: 8080}
	snap.Endpoints[web] = append(snap.Endpoints[web], mesh.Endpoint{Address: "10.0.0.4", Port: 8080, Zone: "a", Health: mesh.Healthy, ServiceAccount: "web"})
	for _, opts := range []translate.Options{{}, {TrustDomain: "cluster.local"}} {
		for _, mtls := range []bool{false, true} {
			proxy := func(ip string) *mesh.Proxy {
				return &mesh.Proxy{ID: "p", Kind: mesh.ProxyEnvoy, Namespace: "default", IP: ip, Zone: "a", MTLS: mtls}
			}
			// 10.0.0.2 and 10.0.0.4 back web:8080; 10.0.0.1 also web:5432.
			a, b, c := proxy("10.0.0.2"), proxy("10.0.0.4"), proxy("10.0.0.1")
			ia, ib, ic := translate.EndpointInputs(snap, a, opts), translate.EndpointInputs(snap, b, opts), translate.EndpointInputs(snap, c, opts)
			if ia != ib || ia == ic {
				t.Fatalf("trust domain %q mtls %v: inputs %q, %q, %q", opts.TrustDomain, mtls, ia, ib, ic)
			}
			ra, rb := translate.Translate(snap, a, opts), translate.Translate(snap, b, opts)
			for typ := range ra.Resources {
				if diff := cmp.Diff(ra.Resources[typ], rb.Resources[typ], protocmp.Transform()); diff != "" {
					t.Errorf("trust domain %q mtls %v: %s of twins differ:\n%s", opts.TrustDomain, mtls, shortType(typ), diff)
				}
			}
		}
	}
}

func TestAddressTwinsShareOneTranslation(t *testing.T) {
	tt := &testTranslator{}
	tr := TranslatorFuncs{
		TranslateFunc: tt.Translate,
		EndpointsFunc: tt.Endpoints,
		InputsFunc: func(_ *mesh.Snapshot, p *mesh.Proxy) string {
			if p.IP == "10.0.0.9" {
				return "serves other ports"
			}
			return "serves api"
		},
	}
	c := newCache(tr, newMetrics(nil), nil)
	c.setSnapshot(twoServices().snapshot(), false)
	var views []*classView
	for _, ip := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.9"} {
		k, p := classOf(mesh.Proxy{Kind: mesh.ProxyEnvoy, Namespace: "default", IP: ip})
		views = append(views, c.view(c.gen, k, p))
	}
	if got := tt.translations.Load(); got != 2 {
		t.Errorf("translations = %d, want 2 (two IPs with equal inputs share one)", got)
	}
	if views[0].types[resourcev3.ClusterType] != views[1].types[resourcev3.ClusterType] {
		t.Error("twins do not share their views")
	}
	if views[2].key == views[0].key || views[2].types == nil {
		t.Errorf("the third class: %v", views[2].key)
	}
}
