package translate

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-mesh/sluice/mesh"
)

// httpProtocolOptionsKey is the extension name under which Envoy reads a
// cluster's upstream HTTP protocol options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// inboundBindAddress is the source address of connections Envoy makes to
// the local workload for passthrough traffic. Binding to it keeps iptables
// from redirecting them back to Envoy (the rule that catches an app calling
// its own pod IP must not catch Envoy's own connections).
const inboundBindAddress = "127.0.0.6"

// adsConfigSource says "ask the same ADS stream", the only config source
// (with self) grpc-go accepts for RDS and EDS.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// edsCluster is the cluster of a service port as both proxy kinds see it:
// EDS over ADS with the service's LB policy and outlier detection. grpc-go
// accepts only EDS, LOGICAL_DNS and aggregate clusters and the policies
// ROUND_ROBIN, LEAST_REQUEST (choice_count >= 2, the default) and RING_HASH
// (XX_HASH, the default); lbFor never yields anything else for it.
func (t *translator) edsCluster(sp servicePort) *clusterv3.Cluster {
	lb := t.lbFor(sp.svc)
	return &clusterv3.Cluster{
		Name:                 ClusterName(sp.key, t.domain),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		LbPolicy:             lb.policy,
		OutlierDetection:     lb.outlierDetection(),
	}
}

// grpcClusters returns one EDS cluster per service port (with mutual TLS
// unless the service's mode is DISABLE, see tls.go), and
// InvalidBackendCluster when a route sends part of its traffic to backends
// that could not be resolved.
func (t *translator) grpcClusters(ports []servicePort) []types.Resource {
	out := make([]types.Resource, 0, len(ports)+1)
	for _, sp := range ports {
		c := t.edsCluster(sp)
		c.TransportSocket = t.grpcUpstreamTLS(sp)
		out = append(out, c)
	}
	if t.needsInvalidBackendCluster(ports) {
		out = append(out, invalidBackendCluster())
	}
	return out
}

// invalidBackendCluster is, for proxyless gRPC, an EDS cluster whose
// endpoints are always empty: grpc-go accepts it and fails every RPC it
// picks with UNAVAILABLE, the Gateway API's answer for an invalid
// backendRef. (A route to a cluster that does not exist would make grpc-go
// wait for it; a direct_response cannot take a share of a weighted split.)
func invalidBackendCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 InvalidBackendCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// envoyClusters returns one EDS cluster per service port (with mutual TLS
// unless the service's mode is DISABLE, see tls.go), a STATIC cluster per
// inbound port and the two passthrough clusters.
func (t *translator) envoyClusters(ports []servicePort) []types.Resource {
	out := make([]types.Resource, 0, len(ports)+2)
	for _, sp := range ports {
		c := t.edsCluster(sp)
		d := t.lbFor(sp.svc).connectTimeout
		if d == 0 {
			d = DefaultEnvoyConnectTimeout
		}
		c.ConnectTimeout = durationpb.New(d)
		t.lbFor(sp.svc).setSlowStart(c)
		c.TransportSocket = t.envoyUpstreamTLS(sp)
		switch sp.port.Protocol {
		case mesh.ProtocolHTTP2, mesh.ProtocolGRPC:
			c.TypedExtensionProtocolOptions = t.httpProtocolOptions(&httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
						},
					},
				},
			})
		}
		out = append(out, c)
	}
	blackHole := false
	for _, in := range t.inboundPorts(ports) {
		out = append(out, t.inboundCluster(in))
		blackHole = blackHole || (in.tls == mesh.TLSStrict && !t.proxy.MTLS)
	}
	if blackHole {
		out = append(out, blackHoleCluster())
	}
	out = append(out,
		originalDstCluster(PassthroughCluster, ""),
		originalDstCluster(InboundPassthroughCluster, inboundBindAddress),
	)
	return out
}

// inboundCluster delivers traffic for a target port to the application on
// 127.0.0.1. HTTP ports speak to it in the protocol the client used.
func (t *translator) inboundCluster(in inboundPort) *clusterv3.Cluster {
	name := InboundClusterName(in.port)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress("127.0.0.1", in.port),
					}},
				}},
			}},
		},
	}
	if in.protocol.IsHTTP() {
		c.TypedExtensionProtocolOptions = t.httpProtocolOptions(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
				UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
					HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		})
	}
	return c
}

// blackHoleCluster has no endpoints: a connection sent to it is closed.
// It receives what must not reach the workload (a STRICT port of a sidecar
// that cannot terminate mutual TLS).
func blackHoleCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 BlackHoleCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: BlackHoleCluster},
	}
}

// originalDstCluster forwards to the connection's original destination,
// optionally binding the upstream connection to a source address.
func originalDstCluster(name, bindAddress string) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
	}
	if bindAddress != "" {
		c.UpstreamBindConfig = &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{
			Address:       bindAddress,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}}
	}
	return c
}

func (t *translator) httpProtocolOptions(opts *httpv3.HttpProtocolOptions) map[string]*anypb.Any {
	a := t.any(opts)
	if a == nil {
		return nil
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: a}
}

// DefaultEnvoyConnectTimeout is the connect timeout of Envoy clusters whose
// service sets none (Envoy's own default is 5s; a mesh wants to move on to
// another endpoint sooner).
const DefaultEnvoyConnectTimeout = time.Second
