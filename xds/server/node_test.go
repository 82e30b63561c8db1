package server

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestParseProxy(t *testing.T) {
	tests := []struct {
		name string
		node *corev3.Node
		want mesh.Proxy
	}{
		{"nil node", nil, mesh.Proxy{Kind: mesh.ProxyGRPC}},
		{"no metadata", &corev3.Node{Id: "x"}, mesh.Proxy{ID: "x", Kind: mesh.ProxyGRPC}},
		{"envoy by user agent", &corev3.Node{Id: "e", UserAgentName: "envoy"}, mesh.Proxy{ID: "e", Kind: mesh.ProxyEnvoy}},
		{"grpc-java by user agent", &corev3.Node{Id: "j", UserAgentName: "gRPC Java"}, mesh.Proxy{ID: "j", Kind: mesh.ProxyGRPC}},
		{"metadata wins over user agent", &corev3.Node{UserAgentName: "envoy", Metadata: metadata(map[string]string{MetaProxyKind: "grpc"})}, mesh.Proxy{Kind: mesh.ProxyGRPC}},
		{"everything", &corev3.Node{
			Id:            "api-1.default",
			UserAgentName: "gRPC Go",
			Locality:      &corev3.Locality{Zone: "zone-a"},
			Metadata: metadata(map[string]string{
				MetaProxyKind: "envoy", MetaNamespace: "default", MetaPodName: "api-1",
				MetaServiceAccount: "api", MetaInstanceIP: "10.0.0.1, 10.0.0.2",
			}),
		}, mesh.Proxy{ID: "api-1.default", Kind: mesh.ProxyEnvoy, Namespace: "default", Pod: "api-1", ServiceAccount: "api", IP: "10.0.0.1", Zone: "zone-a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseProxy(tc.node); got != tc.want {
				t.Errorf("ParseProxy = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestClassOf(t *testing.T) {
	a := mesh.Proxy{ID: "a", Kind: mesh.ProxyGRPC, Namespace: "ns", Pod: "a", IP: "10.0.0.1", Zone: "z"}
	b := mesh.Proxy{ID: "b", Kind: mesh.ProxyGRPC, Namespace: "ns", Pod: "b", IP: "10.0.0.2", Zone: "z"}
	ka, pa := classOf(a)
	kb, _ := classOf(b)
	if ka != kb {
		t.Errorf("gRPC clients differing in id, pod and IP are in classes %v and %v", ka, kb)
	}
	if pa.Pod != "" || pa.IP != "" || pa.ID != "grpc ns=ns zone=z" {
		t.Errorf("class proxy = %+v: translation must see class attributes only", pa)
	}
	a.Kind, b.Kind = mesh.ProxyEnvoy, mesh.ProxyEnvoy
	ka, pa = classOf(a)
	kb, _ = classOf(b)
	if ka == kb || pa.IP != "10.0.0.1" {
		t.Errorf("Envoys with different IPs share class %v (proxy %+v)", ka, pa)
	}
	c := a
	c.Zone = "other"
	if kc, _ := classOf(c); kc == ka {
		t.Error("zone is not part of the class")
	}
}
