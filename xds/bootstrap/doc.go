// Package bootstrap renders the bootstrap configuration a workload needs to
// reach Sluice: the JSON file proxyless gRPC reads from GRPC_XDS_BOOTSTRAP,
// or the YAML an Envoy sidecar starts with.
//
// Node convention (shared with xds/server, which parses it back):
//
//	node.id                         "<pod>.<namespace>" (any unique string works)
//	node.locality.zone              the workload's zone, for locality-aware routing
//	node.metadata.PROXY_KIND        "grpc" or "envoy"
//	node.metadata.NAMESPACE         the pod's namespace
//	node.metadata.POD_NAME          the pod's name
//	node.metadata.SERVICE_ACCOUNT   the pod's service account
//	node.metadata.INSTANCE_IP       the pod's IP (Envoy's inbound listener)
//	node.metadata.MTLS              "true" when the certificate agent feeds the
//	                                proxy its certificates: an Envoy bootstrap
//	                                with the SDS cluster, a gRPC bootstrap with
//	                                the certificate provider (WithCertificateProviders)
//
// Every metadata key is optional: a client with none still gets every
// service it asks for.
package bootstrap

// Metadata keys of the xDS node.
const (
	MetaProxyKind      = "PROXY_KIND"
	MetaNamespace      = "NAMESPACE"
	MetaPodName        = "POD_NAME"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaInstanceIP     = "INSTANCE_IP"
	MetaMTLS           = "MTLS"
)

// ServerListenerTemplate is the name proxyless gRPC servers
// (xds.NewGRPCServer) ask LDS for, with %s replaced by their listening
// address.
const ServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"
