// Package agent is the certificate agent that runs beside a workload (a
// sidecar container, `sluice agent`): it makes the workload's private key
// locally, has Sluice's certificate service sign a CSR for the workload's
// SPIFFE ID, renews at about half of the certificate's life, and hands the
// credentials to publishers: an SDS server on a Unix socket for a local
// Envoy, and files for proxyless gRPC's file_watcher certificate provider.
//
// Consumes: the projected ServiceAccount token, the certificate service.
// Produces: Credentials, published to SDS and files.
//
// The private key never leaves the pod: only the CSR is sent.
package agent
