package mesh

import "time"

// ServiceKey names a service: its namespace and name.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String returns "namespace/name".
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// Protocol is the application protocol of a service port.
type Protocol string

const (
	// ProtocolHTTP is HTTP/1.1 (and h2c upgrades); routed by Host.
	ProtocolHTTP Protocol = "http"
	// ProtocolHTTP2 is HTTP/2 with prior knowledge, which includes gRPC.
	ProtocolHTTP2 Protocol = "http2"
	// ProtocolGRPC is gRPC (HTTP/2).
	ProtocolGRPC Protocol = "grpc"
	// ProtocolTCP is opaque TCP, proxied without routing.
	ProtocolTCP Protocol = "tcp"
)

// IsHTTP reports whether the protocol is routed at layer 7.
func (p Protocol) IsHTTP() bool { return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC }

// Service is one service of the mesh with its ports and settings. Endpoints
// are not part of it: they live in Snapshot.Endpoints so that endpoint churn
// does not touch services (the endpoint fast path).
type Service struct {
	Namespace string
	Name      string
	// ClusterIPs are the virtual IPs of the service; empty for headless services.
	ClusterIPs []string
	// Ports are sorted by Port.
	Ports []Port
	LB    LoadBalancing
	// TLSMode is the service's mutual TLS mode; empty means DefaultTLSMode.
	TLSMode TLSMode
	// Warnings are problems found while building the service (an invalid
	// annotation, a duplicate port); the service is still served with defaults.
	Warnings []string
}

// Key returns the service's key.
func (s *Service) Key() ServiceKey { return ServiceKey{Namespace: s.Namespace, Name: s.Name} }

// Port is one port of a service.
type Port struct {
	// Name is the service port's name, empty when the service has one unnamed port.
	Name     string
	Port     uint32
	Protocol Protocol
}

// LBPolicy is a load-balancing policy.
type LBPolicy string

const (
	LBRoundRobin   LBPolicy = "round_robin"
	LBLeastRequest LBPolicy = "least_request"
	LBRingHash     LBPolicy = "ring_hash"
	LBRandom       LBPolicy = "random"
)

// HashPolicy says what ring hash hashes on. Exactly one field is set.
type HashPolicy struct {
	Header   string
	Cookie   string
	SourceIP bool
}

// OutlierDetection ejects endpoints that keep failing.
type OutlierDetection struct {
	Consecutive5xx     uint32
	Interval           time.Duration
	BaseEjectionTime   time.Duration
	MaxEjectionPercent uint32
}

// LoadBalancing holds the per-service load-balancing settings.
type LoadBalancing struct {
	Policy LBPolicy
	// Hash is set when Policy is LBRingHash.
	Hash *HashPolicy
	// LocalityAware prefers endpoints in the client's zone and spills over to
	// other zones when the local zone's healthy share drops.
	LocalityAware bool
	// Outlier is nil when outlier detection is off.
	Outlier *OutlierDetection
	// SlowStart, when positive, ramps a newly ready endpoint's share of new
	// requests up over this window (Envoy only; opt-in per Service).
	SlowStart time.Duration
	// ConnectTimeout bounds connecting to an endpoint; zero means not set
	// (Envoy clusters then get Sluice's default, proxyless gRPC its own backoff).
	ConnectTimeout time.Duration
}
