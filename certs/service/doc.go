// Package service is Sluice's certificate service: the gRPC API of
// certs/api/v1 served over TLS. It authenticates the caller's bearer token
// (certs/authn), checks that the CSR asks for the caller's own SPIFFE ID,
// limits the rate per identity, and signs with the current CA (certs/ca).
// WatchTrustBundle streams the trust bundle to agents as it changes and
// records in Agents the version each has applied, which the CA rotation
// (certs/rotation) waits for.
//
// Consumes: CSRs with ServiceAccount tokens; the CA in use and its changes;
// agents' acknowledgements. Produces: certificate chains and the trust
// bundle; Agents; metrics of issued certificates, refusals by reason and
// agents by bundle version.
package service
