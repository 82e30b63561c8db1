package load

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node formats: how a simulated proxy introduces itself.
const (
	// NodeSluice is Sluice's convention (xds/bootstrap): id
	// "<pod>.<namespace>", PROXY_KIND, NAMESPACE, POD_NAME,
	// SERVICE_ACCOUNT, INSTANCE_IP metadata and the zone as locality.
	NodeSluice = "sluice"
	// NodeIstio is an Istio sidecar's: id
	// "sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>", metadata
	// NAMESPACE, NAME, SERVICE_ACCOUNT, INSTANCE_IPS, CLUSTER_ID, LABELS.
	NodeIstio = "istio"
	// NodeBare is the id "<pod>.<namespace>" and the locality only.
	NodeBare = "bare"
)

// Client kinds: how a simulated proxy subscribes.
const (
	ClientEnvoy = "envoy"
	ClientGRPC  = "grpc"
)

// identity is the pod a proxy impersonates.
type identity struct {
	id      string
	pod     string
	ns      string
	sa      string
	ip      string
	zone    string
	service string
}

// nodeOf returns the xDS node of a proxy in the given format.
func nodeOf(format, client, domain string, who identity) (*corev3.Node, error) {
	ua := "envoy"
	if client == ClientGRPC {
		ua = "gRPC Go"
	}
	n := &corev3.Node{
		Id:            who.id,
		UserAgentName: ua,
		Locality:      &corev3.Locality{Zone: who.zone},
	}
	var md map[string]any
	switch format {
	case NodeSluice:
		md = map[string]any{
			"PROXY_KIND":      client,
			"NAMESPACE":       who.ns,
			"POD_NAME":        who.pod,
			"SERVICE_ACCOUNT": who.sa,
			"INSTANCE_IP":     who.ip,
		}
	case NodeIstio:
		n.Id = fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", who.ip, who.pod, who.ns, who.ns, domain)
		md = map[string]any{
			"NAMESPACE":       who.ns,
			"NAME":            who.pod,
			"SERVICE_ACCOUNT": who.sa,
			"INSTANCE_IPS":    who.ip,
			"CLUSTER_ID":      "Kubernetes",
			"LABELS":          map[string]any{"app": who.service},
		}
	case NodeBare:
	default:
		return nil, fmt.Errorf("unknown node format %q (want %s, %s or %s)", format, NodeSluice, NodeIstio, NodeBare)
	}
	if md != nil {
		s, err := structpb.NewStruct(md)
		if err != nil {
			return nil, fmt.Errorf("node metadata: %w", err)
		}
		n.Metadata = s
	}
	return n, nil
}
