package discovery

import (
	"strings"

	"github.com/sluice-mesh/sluice/mesh"
)

// DefaultProtocol is the protocol of a port whose appProtocol and name say
// nothing. It is TCP because proxying an unknown protocol as opaque TCP
// always works, while parsing it as HTTP breaks every non-HTTP protocol
// (databases, brokers, TLS passthrough). Name ports ("http-web", "grpc") or
// set appProtocol to get layer-7 routing.
const DefaultProtocol = mesh.ProtocolTCP

// appProtocols maps Service port appProtocol values to protocols: the
// Kubernetes standard names (kubernetes.io/h2c, kubernetes.io/ws,
// kubernetes.io/wss) and the IANA-style names used by Istio and others.
var appProtocols = map[string]mesh.Protocol{
	"kubernetes.io/h2c": mesh.ProtocolHTTP2,
	"kubernetes.io/ws":  mesh.ProtocolHTTP,
	"kubernetes.io/wss": mesh.ProtocolTCP,
	"http":              mesh.ProtocolHTTP,
	"http2":             mesh.ProtocolHTTP2,
	"h2c":               mesh.ProtocolHTTP2,
	"grpc":              mesh.ProtocolGRPC,
	"grpc-web":          mesh.ProtocolHTTP,
	"tcp":               mesh.ProtocolTCP,
	"https":             mesh.ProtocolTCP,
	"tls":               mesh.ProtocolTCP,
	"mongo":             mesh.ProtocolTCP,
	"mysql":             mesh.ProtocolTCP,
	"redis":             mesh.ProtocolTCP,
}

// portNamePrefixes maps the part of a port name before the first "-" to a
// protocol (Istio's convention: "http-web", "grpc", "tcp-db").
var portNamePrefixes = appProtocols

// detectProtocol returns the protocol of a service port: from appProtocol
// when it is a known value, else from the port name's prefix, else
// DefaultProtocol. Values are compared case-insensitively.
func detectProtocol(appProtocol *string, portName string) mesh.Protocol {
	if appProtocol != nil {
		if p, ok := appProtocols[strings.ToLower(*appProtocol)]; ok {
			return p
		}
	}
	prefix, _, _ := strings.Cut(strings.ToLower(portName), "-")
	if p, ok := portNamePrefixes[prefix]; ok {
		return p
	}
	return DefaultProtocol
}
