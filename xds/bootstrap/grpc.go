package bootstrap

import (
	"encoding/json"
	"fmt"
)

type grpcBootstrap struct {
	XDSServers                         []grpcXDSServer `json:"xds_servers"`
	Node                               grpcNode        `json:"node"`
	ServerListenerResourceNameTemplate string          `json:"server_listener_resource_name_template"`
}

type grpcXDSServer struct {
	ServerURI      string            `json:"server_uri"`
	ChannelCreds   []grpcChannelCred `json:"channel_creds"`
	ServerFeatures []string          `json:"server_features"`
}

type grpcChannelCred struct {
	Type string `json:"type"`
}

type grpcNode struct {
	ID       string            `json:"id"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Locality *grpcLocality     `json:"locality,omitempty"`
}

type grpcLocality struct {
	Zone string `json:"zone"`
}

// GRPC returns the bootstrap JSON for a proxyless gRPC client or server.
func GRPC(w Workload) ([]byte, error) {
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	b := grpcBootstrap{
		XDSServers: []grpcXDSServer{{
			ServerURI:      w.XDSAddress,
			ChannelCreds:   []grpcChannelCred{{Type: "insecure"}},
			ServerFeatures: []string{"xds_v3"},
		}},
		Node: grpcNode{
			ID:       w.nodeID(),
			Metadata: w.metadata("grpc"),
		},
		ServerListenerResourceNameTemplate: ServerListenerTemplate,
	}
	if w.Zone != "" {
		b.Node.Locality = &grpcLocality{Zone: w.Zone}
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}
