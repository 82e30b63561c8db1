// Package drain tells when a terminating pod no longer gets new requests
// from any proxy: ACK-confirmed endpoint removal.
//
// A pod is drained when every connected proxy that has the EDS resource of
// a cluster the pod is an endpoint of has ACKed a copy in which the pod's
// address is absent or not offered for new requests (DRAINING or UNHEALTHY;
// Envoy finishes requests in flight on a DRAINING endpoint and sends it no
// new ones), and the mesh snapshot no longer has the pod as a Healthy
// endpoint (until the EndpointSlice controller marks it terminating, every
// proxy is right to keep using it).
//
// The Tracker follows the mesh snapshots (OnSnapshot, after the xDS server
// got the same snapshot) and keeps an index of endpoints by pod and address,
// remembering removed endpoints for a while so a pod whose endpoints are
// already gone is still checked against the clusters it was in. It asks the
// xDS server which streams still hold a copy routing to the pod
// (server.Server.PendingAcks). NewHandler serves GET /drain, which blocks
// until the pod is drained or a timeout; `sluice agent wait-drained` calls
// it from a preStop hook.
//
// One control plane replica knows only the proxies connected to it: with
// several replicas, every replica must be asked (wait-drained queries every
// address its --url resolves to). docs/draining.md describes the pod spec.
package drain
