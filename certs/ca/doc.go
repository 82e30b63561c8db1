// Package ca is Sluice's certificate authority: an ECDSA P-256 root (10
// years) and a signing intermediate (1 year), generated on first start or
// provided by the operator, kept in a Store (a Kubernetes Secret in Sluice's
// namespace, or a directory), and the signing of workload certificates with
// SPIFFE IDs. A Store also keeps the State of a rotation (certs/rotation
// drives it): the next root and intermediate, the phase, requests and the
// replicas' reports, updated by compare-and-swap. Source holds the CA in
// use while rotations replace it.
//
// Consumes: CSRs (parsed and checked by ParseCSR) and the CA material from a
// Store. Produces: leaf certificates chained leaf → intermediate → root, and
// the trust bundle (the roots) with its version.
//
// Keys never leave this package's types in text: Material and CA redact
// themselves in fmt, slog and JSON; Info is the view for /debug.
package ca
