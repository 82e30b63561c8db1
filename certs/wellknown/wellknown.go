// Package wellknown holds the names the certificate agent, the workloads'
// proxies and Sluice's xDS translation must agree on: SDS secret names,
// certificate file names, default paths and ports. Constants only, so
// translation can import it without pulling in the agent.
package wellknown

// SDS secrets the agent serves to the local Envoy. Envoy's TLS contexts
// refer to them by these names with an sds_config pointing at the agent's
// Unix socket.
const (
	// SDSCertificate is the workload's certificate chain and private key
	// (a tls_certificate secret).
	SDSCertificate = "default"
	// SDSTrustBundle is the mesh's roots (a validation_context secret).
	SDSTrustBundle = "ROOTCA"
)

// Files the agent writes for proxyless gRPC's file_watcher certificate
// provider, in its certificate directory.
const (
	CertChainFile   = "cert-chain.pem"
	KeyFile         = "key.pem"
	TrustBundleFile = "root-cert.pem"
)

// Defaults of a workload pod.
const (
	// DefaultSDSSocket is where the agent serves SDS (a volume shared with
	// Envoy).
	DefaultSDSSocket = "/var/run/sluice/sds/sds.sock"
	// DefaultCertDir is where the agent writes certificate files (a volume
	// shared with the gRPC application).
	DefaultCertDir = "/var/run/sluice/certs"
	// DefaultTokenFile is the projected ServiceAccount token with Sluice's
	// audience.
	DefaultTokenFile = "/var/run/secrets/sluice/token"
	// DefaultCertificateServicePort is the port of Sluice's certificate
	// service.
	DefaultCertificateServicePort = 15012
)
