package discovery

import (
	"testing"

	"k8s.io/utils/ptr"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestDetectProtocol(t *testing.T) {
	tests := []struct {
		name        string
		appProtocol *string
		portName    string
		want        mesh.Protocol
	}{
		{"h2c appProtocol", ptr.To("kubernetes.io/h2c"), "", mesh.ProtocolHTTP2},
		{"websocket appProtocol", ptr.To("kubernetes.io/ws"), "", mesh.ProtocolHTTP},
		{"grpc appProtocol", ptr.To("grpc"), "", mesh.ProtocolGRPC},
		{"http appProtocol", ptr.To("HTTP"), "", mesh.ProtocolHTTP},
		{"http2 appProtocol", ptr.To("http2"), "", mesh.ProtocolHTTP2},
		{"tcp appProtocol wins over an http name", ptr.To("tcp"), "http-web", mesh.ProtocolTCP},
		{"https appProtocol is opaque TLS", ptr.To("https"), "", mesh.ProtocolTCP},
		{"unknown appProtocol falls back to the name", ptr.To("example.com/custom"), "grpc-api", mesh.ProtocolGRPC},
		{"name http", nil, "http", mesh.ProtocolHTTP},
		{"name http- prefix", nil, "http-web", mesh.ProtocolHTTP},
		{"name http2- prefix", nil, "http2-api", mesh.ProtocolHTTP2},
		{"name grpc- prefix", nil, "grpc-backend", mesh.ProtocolGRPC},
		{"name is case-insensitive", nil, "GRPC", mesh.ProtocolGRPC},
		{"name tcp- prefix", nil, "tcp-db", mesh.ProtocolTCP},
		{"name with http inside is not http", nil, "webhttp", DefaultProtocol},
		{"name httpx is not http", nil, "httpx", DefaultProtocol},
		{"unnamed port", nil, "", DefaultProtocol},
		{"empty appProtocol falls back", ptr.To(""), "http", mesh.ProtocolHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := detectProtocol(tt.appProtocol, tt.portName); got != tt.want {
				t.Errorf("detectProtocol(%v, %q) = %s, want %s", ptr.Deref(tt.appProtocol, "<nil>"), tt.portName, got, tt.want)
			}
		})
	}
	if DefaultProtocol != mesh.ProtocolTCP {
		t.Errorf("DefaultProtocol = %s; the documented default is tcp", DefaultProtocol)
	}
}
