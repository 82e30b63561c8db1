package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// grpcListeners returns the API listeners of proxyless gRPC clients: for
// each service port, one listener per name a client may dial (see
// GRPCListenerNames), all holding the same HttpConnectionManager that
// fetches the port's route configuration over ADS.
//
// What grpc-go checks and this satisfies: api_listener holds an
// HttpConnectionManager; its route specifier is RDS with an ADS config
// source and a non-empty route_config_name; xff_num_trusted_hops is zero
// and original_ip_detection_extensions empty; the HTTP filter list is
// non-empty, names unique, and the router (the only terminal filter) last.
func (t *translator) grpcListeners(ports []servicePort) []types.Resource {
	out := make([]types.Resource, 0, 3*len(ports))
	for _, sp := range ports {
		route := GRPCRouteName(sp.key, t.domain)
		hcm := t.any(t.rdsConnectionManager(route, route))
		for _, name := range GRPCListenerNames(sp.key, t.domain) {
			out = append(out, &listenerv3.Listener{
				Name:        name,
				ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
			})
		}
	}
	return out
}
