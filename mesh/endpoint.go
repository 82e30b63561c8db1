package mesh

// PortKey names one port of one service: the unit that becomes an xDS cluster.
type PortKey struct {
	Namespace string
	Name      string
	Port      uint32
}

// Service returns the key of the port's service.
func (k PortKey) Service() ServiceKey { return ServiceKey{Namespace: k.Namespace, Name: k.Name} }

// Health is the state of an endpoint as proxies should see it.
type Health int

const (
	// Healthy endpoints are ready and take new requests.
	Healthy Health = iota
	// Draining endpoints are serving but terminating: requests in flight
	// finish, new ones go elsewhere.
	Draining
	// Unhealthy endpoints are not serving and are not offered.
	Unhealthy
)

func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Draining:
		return "draining"
	default:
		return "unhealthy"
	}
}

// Endpoint is one address behind a service port.
type Endpoint struct {
	Address string
	// Port is the target port on the endpoint.
	Port   uint32
	Zone   string
	Health Health
	// Pod, ServiceAccount and Labels come from the backing pod when known.
	Pod            string
	ServiceAccount string
	Labels         map[string]string
}
