package mesh

// ProxyKind is the kind of xDS client.
type ProxyKind string

const (
	// ProxyEnvoy is an Envoy sidecar whose traffic is captured by iptables.
	ProxyEnvoy ProxyKind = "envoy"
	// ProxyGRPC is a proxyless gRPC client or server (grpc-go, grpc-java...).
	ProxyGRPC ProxyKind = "grpc"
)

// Proxy describes a connected xDS client: what translation needs to know
// about who asks. It is parsed from the xDS node by the server.
type Proxy struct {
	// ID is the xDS node id.
	ID   string
	Kind ProxyKind
	// Namespace, Pod and ServiceAccount identify the workload; empty when the
	// client sent no metadata.
	Namespace      string
	Pod            string
	ServiceAccount string
	// IP is the workload's address (inbound listener for Envoy).
	IP string
	// Zone is the client's locality zone, used for locality-aware routing.
	Zone string
	// MTLS says the proxy has the workload's certificates, fed by the
	// certificate agent (Envoy: SDS; gRPC: the bootstrap's certificate
	// provider), so it can do mutual TLS. Without them it speaks
	// plaintext only (grpc-go NACKs TLS settings that name a certificate
	// provider its bootstrap lacks).
	MTLS bool
}
