package bootstrap

import (
	"encoding/json"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/sluice-mesh/sluice/certs/wellknown"
)

var workload = Workload{
	Pod: "client-7d9f", Namespace: "shop", ServiceAccount: "client",
	IP: "10.244.1.7", Zone: "zone-a", XDSAddress: "sluice.sluice-system.svc:15010",
}

func TestGRPCBootstrap(t *testing.T) {
	out, err := GRPC(workload)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(out, &got))
	servers := got["xds_servers"].([]any)
	require.Len(t, servers, 1)
	server := servers[0].(map[string]any)
	assert.Equal(t, "sluice.sluice-system.svc:15010", server["server_uri"])
	assert.Equal(t, []any{"xds_v3"}, server["server_features"])
	node := got["node"].(map[string]any)
	assert.Equal(t, "client-7d9f.shop", node["id"])
	assert.Equal(t, map[string]any{"zone": "zone-a"}, node["locality"])
	assert.Equal(t, map[string]any{
		"PROXY_KIND": "grpc", "NAMESPACE": "shop", "POD_NAME": "client-7d9f",
		"SERVICE_ACCOUNT": "client", "INSTANCE_IP": "10.244.1.7",
	}, node["metadata"])
	assert.Equal(t, ServerListenerTemplate, got["server_listener_resource_name_template"])
}

func TestEnvoyBootstrapIsValid(t *testing.T) {
	for name, w := range map[string]Workload{
		"dns name":   workload,
		"ip address": {Pod: "p", XDSAddress: "127.0.0.1:15010"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := EnvoyYAML(w)
			require.NoError(t, err)
			j, err := yaml.YAMLToJSON(out)
			require.NoError(t, err)
			var b bootstrapv3.Bootstrap
			require.NoError(t, protojson.Unmarshal(j, &b), "the YAML must read back as an Envoy bootstrap")
			require.NoError(t, b.ValidateAll())
			assert.Equal(t, XDSClusterName, b.GetStaticResources().GetClusters()[0].GetName())
			assert.Len(t, b.GetStaticResources().GetClusters(), 1, "no SDS cluster without an agent socket")
			assert.NotContains(t, b.GetNode().GetMetadata().GetFields(), MetaMTLS)
			assert.NotNil(t, b.GetDynamicResources().GetCdsConfig().GetAds())
			assert.NotNil(t, b.GetDynamicResources().GetLdsConfig().GetAds())
			assert.Equal(t, "envoy", b.GetNode().GetMetadata().GetFields()[MetaProxyKind].GetStringValue())
		})
	}
}

// With the agent's socket, the sidecar reaches SDS through a static pipe
// cluster and tells Sluice it can do mutual TLS.
func TestEnvoyBootstrapWithSDS(t *testing.T) {
	w := workload
	w.SDSSocket = wellknown.DefaultSDSSocket
	out, err := EnvoyYAML(w)
	require.NoError(t, err)
	j, err := yaml.YAMLToJSON(out)
	require.NoError(t, err)
	var b bootstrapv3.Bootstrap
	require.NoError(t, protojson.Unmarshal(j, &b))
	require.NoError(t, b.ValidateAll())
	clusters := b.GetStaticResources().GetClusters()
	require.Len(t, clusters, 2)
	sds := clusters[1]
	assert.Equal(t, SDSClusterName, sds.GetName())
	assert.Equal(t, wellknown.DefaultSDSSocket, sds.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath())
	assert.Contains(t, sds.GetTypedExtensionProtocolOptions(), "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "SDS is gRPC: HTTP/2")
	assert.Equal(t, "true", b.GetNode().GetMetadata().GetFields()[MetaMTLS].GetStringValue())
}

func TestBootstrapRejectsBadInput(t *testing.T) {
	cases := map[string]Workload{
		"no address":      {Pod: "p"},
		"address no port": {Pod: "p", XDSAddress: "sluice"},
		"no pod or id":    {XDSAddress: "a:1"},
		"bad ip":          {Pod: "p", XDSAddress: "a:1", IP: "ten"},
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := GRPC(w)
			assert.Error(t, err)
			_, err = Envoy(w)
			assert.Error(t, err)
		})
	}
}
