// Package service is Sluice's certificate service: the gRPC API of
// certs/api/v1 served over TLS. It authenticates the caller's bearer token
// (certs/authn), checks that the CSR asks for the caller's own SPIFFE ID,
// limits the rate per identity, and signs with the current CA (certs/ca).
//
// Consumes: CSRs with ServiceAccount tokens. Produces: certificate chains
// and the trust bundle; metrics of issued certificates and refusals by
// reason.
package service
