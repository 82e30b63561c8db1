package mesh

// TLSMode says which connections a service's workloads accept and whether
// meshed clients call it with mutual TLS. Identities are per ServiceAccount
// (SPIFFE IDs); Endpoint.ServiceAccount says whose certificate an endpoint
// presents.
type TLSMode string

const (
	// TLSStrict: the workloads accept mutual TLS only; clients originate it.
	TLSStrict TLSMode = "STRICT"
	// TLSPermissive: the workloads accept mutual TLS and plaintext (an Envoy
	// sidecar tells them apart by sniffing); meshed clients originate mutual
	// TLS. The default, so a mesh can be adopted workload by workload.
	TLSPermissive TLSMode = "PERMISSIVE"
	// TLSDisable: plaintext both ways.
	TLSDisable TLSMode = "DISABLE"
)

// DefaultTLSMode is the mode of a service that sets none.
const DefaultTLSMode = TLSPermissive

// OrDefault returns m, or DefaultTLSMode when m is empty.
func (m TLSMode) OrDefault() TLSMode {
	if m == "" {
		return DefaultTLSMode
	}
	return m
}

// Valid reports whether m is one of the modes (the empty mode counts as the
// default).
func (m TLSMode) Valid() bool {
	switch m {
	case "", TLSStrict, TLSPermissive, TLSDisable:
		return true
	}
	return false
}

// OriginatesTLS reports whether clients call a service in mode m with
// mutual TLS.
func (m TLSMode) OriginatesTLS() bool { return m.OrDefault() != TLSDisable }
