package bootstrap

import (
	"fmt"
	"net"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"
)

// XDSClusterName is the static cluster an Envoy bootstrap uses to reach Sluice.
const XDSClusterName = "sluice-xds"

// SDSClusterName is the static cluster an Envoy bootstrap uses to reach the
// certificate agent's SDS socket. The TLS contexts Sluice sends Envoy fetch
// the secrets wellknown.SDSCertificate and wellknown.SDSTrustBundle through
// it.
const SDSClusterName = "sds-grpc"

// EnvoyAdminPort is where the sidecar's admin interface listens (loopback only).
const EnvoyAdminPort = 15000

// Envoy returns the bootstrap proto for an Envoy sidecar that gets all its
// configuration (CDS, LDS and through them EDS, RDS) over ADS from Sluice,
// and, when w.SDSSocket is set, its certificates over SDS from the
// certificate agent's Unix socket.
func Envoy(w Workload) (*bootstrapv3.Bootstrap, error) {
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("Envoy bootstrap: %w", err)
	}
	host, portStr, _ := net.SplitHostPort(w.XDSAddress)
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("Envoy bootstrap: control plane port %q: %w", portStr, err)
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	http2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("Envoy bootstrap: %w", err)
	}
	discovery := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(host) != nil {
		discovery = clusterv3.Cluster_STATIC
	}
	xdsCluster := &clusterv3.Cluster{
		Name:                          XDSClusterName,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: discovery},
		ConnectTimeout:                durationpb.New(time.Second),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: XDSClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(host, uint32(port)),
					}},
				}},
			}},
		},
	}
	md := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range w.metadata("envoy") {
		md.Fields[k] = structpb.NewStringValue(v)
	}
	static := []*clusterv3.Cluster{xdsCluster}
	if w.SDSSocket != "" {
		md.Fields[MetaMTLS] = structpb.NewStringValue("true")
		static = append(static, sdsCluster(w.SDSSocket, http2))
	}
	node := &corev3.Node{Id: w.nodeID(), Cluster: w.Namespace, Metadata: md}
	if w.Zone != "" {
		node.Locality = &corev3.Locality{Zone: w.Zone}
	}
	return &bootstrapv3.Bootstrap{
		Node: node,
		Admin: &bootstrapv3.Admin{
			Address: socketAddress("127.0.0.1", EnvoyAdminPort),
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
					},
				}},
			},
			CdsConfig: ads,
			LdsConfig: proto.Clone(ads).(*corev3.ConfigSource),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: static,
		},
	}, nil
}

// sdsCluster reaches the certificate agent's SDS server on its Unix socket
// (gRPC, so HTTP/2).
func sdsCluster(socket string, http2 *anypb.Any) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                          SDSClusterName,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:                durationpb.New(time.Second),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: SDSClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: socket}}},
					}},
				}},
			}},
		},
	}
}

// EnvoyYAML renders Envoy(w) as YAML, the form envoy -c reads.
func EnvoyYAML(w Workload) ([]byte, error) {
	b, err := Envoy(w)
	if err != nil {
		return nil, err
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("Envoy bootstrap: %w", err)
	}
	return yaml.JSONToYAML(j)
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
