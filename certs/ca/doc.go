// Package ca is Sluice's certificate authority: an ECDSA P-256 root (10
// years) and a signing intermediate (1 year), generated on first start or
// provided by the operator, kept in a Store (a Kubernetes Secret in Sluice's
// namespace, or a directory), and the signing of workload certificates with
// SPIFFE IDs.
//
// Consumes: CSRs (parsed and checked by ParseCSR) and the CA material from a
// Store. Produces: leaf certificates chained leaf → intermediate → root, and
// the trust bundle (the roots).
//
// Keys never leave this package's types in text: Material and CA redact
// themselves in fmt, slog and JSON; Info is the view for /debug.
package ca
