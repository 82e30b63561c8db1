// Package load is Sluice's xDS load harness (docs/performance.md): it writes a mesh of S Services
// × E endpoints into a real API server (test/cluster) or a file-source
// directory, starts `sluice serve` as a subprocess, connects P simulated
// proxies over ADS (delta or state-of-the-world, subscribing as Envoy or as
// proxyless gRPC does), applies changes and measures how long each takes to
// reach the last proxy that subscribes to it, and what the control plane
// spends doing so (CPU, memory, bytes).
//
// # What a simulated proxy does
//
// Each proxy impersonates one pod of the mesh (node id and metadata in the
// format of NodeFormat). An Envoy-like proxy asks for CDS and LDS as
// wildcards, then for the EDS of every EDS cluster and the RDS of every
// listener's HttpConnectionManager, by name, as the clusters and listeners
// arrive. A gRPC-like proxy asks LDS for the listeners of the services it
// calls (FleetOptions.GRPCDeps of them, plus the next service the harness will
// create, as a client dialing a service not deployed yet), then follows
// listener → route configuration → clusters → endpoints by name; it speaks
// SotW only, as grpc-go does. Every response is decoded down to the
// resources and ACKed after it was applied to the proxy's state (SotW LDS
// and CDS replace the state of their type, EDS and RDS update it by name;
// delta adds, updates and removes by name).
//
// Decoding: every response envelope is unmarshaled by gRPC; each resource
// payload is unmarshaled once per distinct byte string and the result
// shared (FleetOptions.DecodeEvery turns the cache off), so the harness stays
// cheap when thousands of proxies receive the same bytes.
//
// # Multiplexing
//
// P ADS streams share ceil(P/StreamsPerConn) gRPC client connections (HTTP/2
// multiplexes the streams; large flow-control windows keep one stream from
// stalling another). Each stream has one goroutine that receives, applies,
// ACKs and subscribes; the connection's transport goroutine demultiplexes.
// StreamsPerConn=1 gives every proxy its own connection, as real proxies
// have (the server then pays for one HTTP/2 transport per proxy).
//
// # What is measured
//
// A change's latency is the time from its API write (or file rename)
// returning until the last subscribed proxy has ACKed a response that
// carries it (its state satisfies the change's expectation: an endpoint
// present and healthy or absent, a new service's endpoints and, for Envoy,
// its listener, a route's new weights). Changes: endpoint readiness flips,
// new services, weight changes of a GAMMA HTTPRoute, bursts of pod
// restarts, and a control-plane restart (Bench.Run, Case). CPU comes from /proc/PID/stat of the control plane (user +
// system), RSS from /proc/PID/status, the Go heap from the control plane's
// /metrics (go_memstats_heap_inuse_bytes); bytes are counted on the client
// side as received wire bytes of gRPC messages.
package load
