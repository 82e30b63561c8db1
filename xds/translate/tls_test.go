package translate

import (
	"sort"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-mesh/sluice/mesh"
)

func withMode(f serviceFixture, m mesh.TLSMode) serviceFixture {
	f.TLSMode = m
	return f
}

func saEP(addr string, port uint32, sa string) mesh.Endpoint {
	return mesh.Endpoint{Address: addr, Port: port, ServiceAccount: sa}
}

// tlsSnapshot: cart (grpc 9090) in shop with two endpoints, one of them
// the proxy's address 10.0.0.1.
func tlsSnapshot(mode mesh.TLSMode) *mesh.Snapshot {
	return snapshot(withMode(service("shop", "cart").withPort(9090, mesh.ProtocolGRPC).withClusterIPs("10.96.0.1"), mode)).
		withEndpoints("shop", "cart", 9090, saEP("10.0.0.1", 9090, "cart"), saEP("10.0.0.2", 9090, "cart")).Snapshot
}

func clustersOf(t *testing.T, r Result) map[string]*clusterv3.Cluster {
	t.Helper()
	out := map[string]*clusterv3.Cluster{}
	for _, c := range r.Resources[resourcev3.ClusterType] {
		out[c.(*clusterv3.Cluster).GetName()] = c.(*clusterv3.Cluster)
	}
	return out
}

func listenersOf(t *testing.T, r Result) map[string]*listenerv3.Listener {
	t.Helper()
	out := map[string]*listenerv3.Listener{}
	for _, l := range r.Resources[resourcev3.ListenerType] {
		out[l.(*listenerv3.Listener).GetName()] = l.(*listenerv3.Listener)
	}
	return out
}

const cartCluster = "outbound|9090||cart.shop.svc.cluster.local"

// Without a trust domain (no CA), nothing is TLS, whatever the modes and
// whether the proxy has certificates.
func TestMTLSOffWithoutTrustDomain(t *testing.T) {
	for _, kind := range []mesh.ProxyKind{mesh.ProxyEnvoy, mesh.ProxyGRPC} {
		r := Translate(tlsSnapshot(mesh.TLSStrict), &mesh.Proxy{ID: "p", Kind: kind, Namespace: "shop", IP: "10.0.0.1", MTLS: true}, Options{})
		for typ, rs := range r.Resources {
			for _, res := range rs {
				if strings.Contains(res.(interface{ String() string }).String(), "transport_socket") {
					t.Errorf("%s: %s %s has a transport socket with mTLS off", kind, typ, resourceName(res))
				}
			}
		}
		if len(r.Warnings) != 0 {
			t.Errorf("%s: warnings %q", kind, r.Warnings)
		}
	}
}

// A client's cluster goes mTLS exactly when the proxy has certificates
// and the destination's mode is not DISABLE.
func TestClientOriginatesMTLS(t *testing.T) {
	for _, kind := range []mesh.ProxyKind{mesh.ProxyEnvoy, mesh.ProxyGRPC} {
		for _, tt := range []struct {
			mode mesh.TLSMode
			mtls bool
			want bool
		}{
			{mesh.TLSStrict, true, true},
			{"", true, true},
			{mesh.TLSPermissive, true, true},
			{mesh.TLSDisable, true, false},
			{mesh.TLSStrict, false, false},
			{mesh.TLSPermissive, false, false},
		} {
			p := &mesh.Proxy{ID: "p", Kind: kind, Namespace: "web", MTLS: tt.mtls}
			r := Translate(tlsSnapshot(tt.mode), p, Options{TrustDomain: "cluster.local"})
			got := clustersOf(t, r)[cartCluster].GetTransportSocket() != nil
			if got != tt.want {
				t.Errorf("%s, mode %q, certificates %v: TLS %v, want %v", kind, tt.mode, tt.mtls, got, tt.want)
			}
			warned := strings.Contains(strings.Join(r.Warnings, "\n"), "has no certificates")
			if wantWarn := tt.mode == mesh.TLSStrict && !tt.mtls; warned != wantWarn {
				t.Errorf("%s, mode %q, certificates %v: warnings %q", kind, tt.mode, tt.mtls, r.Warnings)
			}
		}
	}
}

// SAN matchers: typed URI matchers for Envoy, untyped exact matchers for
// grpc-go (which ignores the typed ones), on the SPIFFE IDs of the
// endpoints' service accounts in the trust domain, sorted, each once.
func TestSANMatchers(t *testing.T) {
	snap := snapshot(service("shop", "cart").withPort(9090, mesh.ProtocolGRPC).withClusterIPs("10.96.0.1")).
		withEndpoints("shop", "cart", 9090, saEP("10.0.0.3", 9090, "cart-v2"), saEP("10.0.0.1", 9090, "cart"), saEP("10.0.0.2", 9090, "cart")).Snapshot
	want := []string{"spiffe://example.org/ns/shop/sa/cart", "spiffe://example.org/ns/shop/sa/cart-v2"}
	opts := Options{TrustDomain: "example.org"}

	r := Translate(snap, &mesh.Proxy{ID: "e", Kind: mesh.ProxyEnvoy, MTLS: true}, opts)
	up := &tlsv3.UpstreamTlsContext{}
	if err := clustersOf(t, r)[cartCluster].GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	vc := up.GetCommonTlsContext().GetCombinedValidationContext()
	var got []string
	for _, m := range vc.GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			t.Errorf("SAN type %s, want URI", m.GetSanType())
		}
		got = append(got, m.GetMatcher().GetExact())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Envoy SANs (-want +got):\n%s", diff)
	}
	if n := vc.GetValidationContextSdsSecretConfig().GetName(); n != "ROOTCA" {
		t.Errorf("Envoy validation secret %q", n)
	}
	if n := up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName(); n != "default" {
		t.Errorf("Envoy certificate secret %q", n)
	}
	if alpn := up.GetCommonTlsContext().GetAlpnProtocols(); !cmp.Equal(alpn, []string{"h2"}) {
		t.Errorf("Envoy ALPN for a grpc port %q, want h2", alpn)
	}

	r = Translate(snap, &mesh.Proxy{ID: "g", Kind: mesh.ProxyGRPC, MTLS: true}, opts)
	up = &tlsv3.UpstreamTlsContext{}
	if err := clustersOf(t, r)[cartCluster].GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	gvc := up.GetCommonTlsContext().GetValidationContext()
	got = nil
	//lint:ignore SA1019 grpc-go reads the deprecated field; the test checks it is what we send
	for _, m := range gvc.GetMatchSubjectAltNames() {
		got = append(got, m.GetExact())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gRPC SANs (-want +got):\n%s", diff)
	}
	if len(gvc.GetMatchTypedSubjectAltNames()) != 0 {
		t.Error("gRPC cluster has typed SAN matchers, which grpc-go ignores")
	}
	id, ca := up.GetCommonTlsContext().GetTlsCertificateProviderInstance(), gvc.GetCaCertificateProviderInstance()
	if id.GetInstanceName() != "sluice" || id.GetCertificateName() != "default" || ca.GetInstanceName() != "sluice" || ca.GetCertificateName() != "ROOTCA" {
		t.Errorf("gRPC providers %v, %v", id, ca)
	}
}

func TestPeerIDsUnknownServiceAccounts(t *testing.T) {
	f := snapshot(service("shop", "cart").withPort(9090, mesh.ProtocolGRPC)).
		withEndpoints("shop", "cart", 9090, saEP("10.0.0.1", 9090, ""), saEP("10.0.0.2", 9090, ""))
	tr := newTranslator(f.Snapshot, &mesh.Proxy{Kind: mesh.ProxyGRPC}, Options{TrustDomain: "cluster.local"})
	sp := tr.servicePorts()[0]
	if ids := tr.peerIDs(sp); len(ids) != 0 {
		t.Errorf("peerIDs = %q, want none", ids)
	}
	if len(tr.warnings) != 1 || !strings.Contains(tr.warnings[0], "checked against the mesh's roots only") {
		t.Errorf("warnings %q", tr.warnings)
	}
}

// A proxyless gRPC server without certificates: STRICT gets no listener
// (fails closed), PERMISSIVE and DISABLE plaintext ones.
func TestGRPCServerWithoutCertificates(t *testing.T) {
	name := "grpc/server?xds.resource.listening_address=10.0.0.1:9090"
	for _, tt := range []struct {
		mode     mesh.TLSMode
		listener bool
		warning  string
	}{
		{mesh.TLSStrict, false, "do not serve"},
		{mesh.TLSPermissive, true, ""},
		{mesh.TLSDisable, true, ""},
	} {
		r := Translate(tlsSnapshot(tt.mode), &mesh.Proxy{ID: "s", Kind: mesh.ProxyGRPC, Namespace: "shop"}, Options{TrustDomain: "cluster.local"})
		l, ok := listenersOf(t, r)[name]
		if ok != tt.listener {
			t.Errorf("%s: listener present %v, want %v", tt.mode, ok, tt.listener)
		}
		if ok && l.GetFilterChains()[0].GetTransportSocket() != nil {
			t.Errorf("%s: TLS for a server without certificates", tt.mode)
		}
		if w := strings.Join(r.Warnings, "\n"); tt.warning != "" && !strings.Contains(w, tt.warning) {
			t.Errorf("%s: warnings %q, want %q", tt.mode, r.Warnings, tt.warning)
		}
	}
}

// Server listeners come from the endpoints of gRPC and HTTP/2 ports of the
// proxy's namespace only; a proxy without a namespace gets none.
func TestGRPCServerListenerScope(t *testing.T) {
	f := snapshot(
		service("shop", "cart").withPort(9090, mesh.ProtocolGRPC),
		service("shop", "web").withPort(80, mesh.ProtocolHTTP),
		service("shop", "h2").withPort(8443, mesh.ProtocolHTTP2),
		service("other", "cart").withPort(9090, mesh.ProtocolGRPC),
	).
		withEndpoints("shop", "cart", 9090, ep("10.0.0.1", 9090, "", mesh.Unhealthy)).
		withEndpoints("shop", "web", 80, ep("10.0.0.2", 8080, "", mesh.Healthy)).
		withEndpoints("shop", "h2", 8443, ep("fd00::3", 8443, "", mesh.Healthy)).
		withEndpoints("other", "cart", 9090, ep("10.0.1.1", 9090, "", mesh.Healthy))
	var got []string
	for name, l := range listenersOf(t, Translate(f.Snapshot, &mesh.Proxy{Kind: mesh.ProxyGRPC, Namespace: "shop"}, Options{})) {
		if l.GetApiListener() == nil {
			got = append(got, name)
		}
	}
	want := []string{
		"grpc/server?xds.resource.listening_address=10.0.0.1:9090",
		"grpc/server?xds.resource.listening_address=[fd00::3]:8443",
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server listeners (-want +got):\n%s", diff)
	}
	for name, l := range listenersOf(t, Translate(f.Snapshot, &mesh.Proxy{Kind: mesh.ProxyGRPC}, Options{})) {
		if l.GetApiListener() == nil {
			t.Errorf("proxy without a namespace got server listener %s", name)
		}
	}
}

func TestUnknownTLSModeIsTheDefault(t *testing.T) {
	r := Translate(tlsSnapshot("MUTUAL"), &mesh.Proxy{ID: "p", Kind: mesh.ProxyGRPC, Namespace: "web", MTLS: true}, Options{TrustDomain: "cluster.local"})
	if clustersOf(t, r)[cartCluster].GetTransportSocket() == nil {
		t.Error("an unknown mode should be the default (PERMISSIVE): mTLS")
	}
	if !strings.Contains(strings.Join(r.Warnings, "\n"), `unknown TLS mode "MUTUAL": PERMISSIVE used`) {
		t.Errorf("warnings %q", r.Warnings)
	}
}

func TestMergeTLSModes(t *testing.T) {
	for _, tt := range []struct {
		a, b   mesh.TLSMode
		want   mesh.TLSMode
		differ bool
	}{
		{mesh.TLSStrict, mesh.TLSStrict, mesh.TLSStrict, false},
		{mesh.TLSDisable, mesh.TLSDisable, mesh.TLSDisable, false},
		{mesh.TLSStrict, mesh.TLSDisable, mesh.TLSPermissive, true},
		{mesh.TLSStrict, mesh.TLSPermissive, mesh.TLSPermissive, true},
	} {
		got, differ := mergeTLSModes(tt.a, tt.b)
		if got != tt.want || differ != tt.differ {
			t.Errorf("mergeTLSModes(%s, %s) = %s, %v; want %s, %v", tt.a, tt.b, got, differ, tt.want, tt.differ)
		}
	}
}
