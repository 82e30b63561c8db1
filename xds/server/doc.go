// Package server serves the translated mesh to Envoy sidecars and proxyless
// gRPC clients over ADS, state-of-the-world and delta, with go-control-plane's
// gRPC server and a cache of our own.
//
// # Why our own cache
//
// go-control-plane v0.14.0's SnapshotCache in ADS mode never answers a client
// that asks for a subset of the snapshot's listeners (what every gRPC client
// does), and its Snapshot.Consistent does not follow api_listener. The cache
// here implements cache.Cache directly over per-class views of the latest
// snapshot.
//
// # Proxies and classes
//
// The xDS node of a stream's first request becomes a mesh.Proxy (ParseProxy
// documents the node id and metadata convention). Proxies are grouped into
// classes by the attributes translation uses (kind, namespace, zone, and the
// IP for Envoy); translation runs once per class and snapshot and is given
// only those attributes, so it cannot depend on anything else. EDS is
// shared more widely: it is translated once per kind and zone (an endpoint
// class) and shared by every class of it. Each resource is marshaled once
// per translation (deterministically) into an entry shared by every
// response and proxy that carries it; its version is a hash of its bytes,
// and a SotW response's version a hash over the names and versions it
// carries.
//
// # Watches
//
// Watches are one-shot: a watch is answered at most once, and the client's
// next request (ACK or NACK) opens the next. A watch is answered when the
// client lacks something it subscribes to: SotW compares the version of what
// would be sent with the version last sent on the stream; delta compares
// resource versions with what the client knows (including delta
// initial_resource_versions on reconnect) and sends only what changed, with
// removed_resources for what the client had and is gone. SotW first requests
// are always answered, empty or not; SotW LDS and CDS are also answered when
// the subscription changed, so gRPC learns a listener does not exist without
// waiting for its timer. Since comparisons are against what was sent, a NACK
// does not make the server resend the rejected configuration; the proxy keeps
// its last accepted one until the next change.
//
// # Ordering
//
// A snapshot is pushed stream by stream, each stream's open watches in ADS
// order (clusters, endpoints, listeners, routes), through go-control-plane's
// ordered ADS channel (SotW) or its single delta channel, so a stream's
// responses leave in that order. Removals go the other way: a resource is
// kept in SotW responses, and kept out of delta removed_resources, until the
// stream has ACKed, at a snapshot without it, the types that refer to it
// (see referencedBy): routes and listeners before the clusters they use,
// clusters before their endpoints.
//
// # Endpoint fast path
//
// OnSnapshot(..., endpointsOnly=true) recomputes EDS only (Translator.Endpoints,
// once per endpoint class) and reuses the class views' listeners, routes and
// clusters.
//
// # Sync tracking
//
// For each stream and type the server records the last response sent, the
// last ACKed (version, nonce, resources), the last NACK, and the latest
// snapshot the client is known to have fully applied. WaitAllAcked,
// AckedVersion, AckedEverywhere and the change-to-ACK histogram are built
// on it.
package server
