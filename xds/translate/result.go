package translate

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Options are the translation settings that do not come from the snapshot.
type Options struct {
	// ClusterDomain is the cluster DNS suffix, "cluster.local" by default.
	ClusterDomain string
	// TrustDomain is the SPIFFE trust domain of the mesh's workload
	// identities (spiffe://<trust domain>/ns/<ns>/sa/<sa>). Empty turns
	// mutual TLS off: no TLS anywhere, whatever the services' TLS modes
	// (a control plane running without its CA). See tls.go.
	TrustDomain string
}

// Result is the output of translating a snapshot for one proxy.
type Result struct {
	// Resources maps an xDS type URL (resource.ListenerType, ...) to the
	// resources of that type, sorted by name.
	Resources map[string][]types.Resource
	// Warnings are problems that did not stop translation: a feature the
	// proxy kind cannot do, an invalid setting replaced by its default. They
	// are shown in /debug and counted in a metric.
	Warnings []string
}
