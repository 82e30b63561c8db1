// Package translate turns the mesh model into xDS resources for one proxy.
//
// Everything here is a pure function of its arguments (snapshot, proxy,
// options): no I/O, no clocks, no globals. The arguments are therefore also
// the cache key of the output. Output is sorted by resource name and
// byte-for-byte deterministic (Any fields are marshaled deterministically).
// Invalid settings and features a proxy kind lacks become Result.Warnings;
// translation goes on with a default.
//
// # Proxyless gRPC (mesh.ProxyGRPC)
//
// For each service port:
//
//	LDS  three API listeners, the names a client dials as xds:///<name>:
//	     <svc>.<ns>.svc.<domain>:<port>, <svc>.<ns>.svc:<port>, <svc>.<ns>:<port>.
//	     Each holds an HttpConnectionManager (RDS over ADS, router filter).
//	RDS  <svc>.<ns>.svc.<domain>:<port>: one virtual host whose domains are the
//	     three names, one route (prefix "/") to the cluster, with the ring-hash
//	     hash policy if any.
//	CDS  outbound|<port>||<fqdn>: EDS over ADS; ROUND_ROBIN, LEAST_REQUEST or
//	     RING_HASH; outlier detection (success-rate ejection: grpc-go has no
//	     consecutive-error ejection).
//	EDS  one locality per zone, every endpoint weight 1, every locality the
//	     number of its endpoints; only Healthy endpoints are offered.
//
// grpc-go cannot do random LB (round robin is used), hash on cookies or the
// source IP (it hashes on the channel, io.grpc.channel_id), consecutive-5xx
// ejection or connect timeouts; each use is a warning. Its locality failover
// is all-or-nothing: see endpoint.go.
//
// # Envoy sidecars (mesh.ProxyEnvoy)
//
// Traffic is captured by iptables: outbound connections are redirected to
// port 15001, inbound ones to 15006.
//
//	outbound        0.0.0.0:15001, use_original_dst: hands each connection to
//	                the listener bound to its original destination; the
//	                default chain forwards anything else (PassthroughCluster).
//	<ClusterIP>_<port>
//	                one virtual listener (bind_to_port false) per service
//	                ClusterIP and port. HTTP ports (http, http2, grpc): an
//	                HttpConnectionManager using the route configuration
//	                outbound|<port>. Other ports: tcp_proxy to the cluster.
//	0.0.0.0_<port>  a wildcard virtual listener for ports of headless HTTP
//	                services (no ClusterIP), with the same routes; non-HTTP
//	                headless ports go through the passthrough (a warning).
//	inbound         0.0.0.0:15006 with the original_dst listener filter: one
//	                filter chain per target port of the services whose
//	                endpoints include the proxy's IP, forwarding to the
//	                STATIC cluster inbound|<port> (127.0.0.1:<port>); the
//	                default chain forwards other ports to their original
//	                destination (InboundPassthroughCluster, bound to
//	                127.0.0.6 so iptables does not loop it back).
//
// The route configuration outbound|<port> is shared by every HTTP service
// on that port: one virtual host per service matching each of its names
// (FQDN, <svc>.<ns>.svc, <svc>.<ns>, <svc> for a proxy in the same
// namespace, every ClusterIP), each with and without ":<port>", then an
// allow_any virtual host sending unknown hosts to their original
// destination. Routes have no timeout, so streams are not cut.
//
// Clusters are EDS over ADS with the service's policy (ROUND_ROBIN,
// LEAST_REQUEST, RING_HASH, RANDOM), outlier detection and connect timeout;
// http2 and grpc ports talk HTTP/2 upstream. Ring hash hashes on a header,
// a cookie (Envoy sets a session cookie when the request has none) or the
// source IP, through the route's hash_policy. Endpoints: Healthy is
// HEALTHY, Draining is DRAINING (in-flight requests finish, no new ones),
// Unhealthy is left out.
//
// # Locality-aware routing (both kinds)
//
// By priorities, computed per proxy zone: the proxy's zone is priority 0 and
// the other zones priority 1. Envoy spills over gradually as the local
// zone's healthy share drops below ~71% (overprovisioning factor 1.4);
// grpc-go only when no local endpoint is reachable. Envoy's zone-aware
// routing was not used because it needs the local cluster in the bootstrap.
//
// # Gateway API routes (both kinds)
//
// A service port with routes (Snapshot.Routes, the GAMMA convention) gets
// one xDS route per rule and match, in the model's precedence order,
// instead of its default route: in the port's RDS resource for gRPC, in
// the service's virtual host of outbound|<port> for Envoy. Weighted
// backends become weighted_clusters (per request, so weight changes move
// traffic on open connections). Matches, filters, timeouts and retries
// are translated per kind; what a kind cannot do is a warning, and a
// match it cannot evaluate is left out (route_match.go). Invalid backends
// fail their share of requests through InvalidBackendCluster or a
// direct_response (route_rules.go). For gRPC, backends at weight 0 stay
// named by a last route that never matches, so that grpc-go keeps their
// clusters and a weight change never adds one (keepBackendsRoute).
// docs/routing.md has the tables.
//
// Slow start (Envoy, round robin and least request) is the cluster's
// slow_start_config; proxyless gRPC has none (a warning).
//
// # Proxyless gRPC servers
//
// xds.NewGRPCServer asks for grpc/server?xds.resource.listening_address=<ip>:<port>.
// A gRPC proxy gets one such listener per endpoint address of a grpc or
// http2 service port of its namespace (listener_grpc_server.go): one filter
// chain, an inline route of non_forwarding_action, the TLS of the port's
// mode.
//
// # Mutual TLS (Options.TrustDomain set)
//
// Clusters of STRICT and PERMISSIVE services carry an UpstreamTlsContext
// matching the SPIFFE IDs of the service accounts behind their endpoints;
// Envoy's certificates come over SDS from the certificate agent, grpc-go's
// from its bootstrap's certificate provider "sluice". Envoy's inbound
// chains terminate mutual TLS (STRICT), or sniff with the tls_inspector and
// take both (PERMISSIVE); grpc-go servers cannot sniff, so PERMISSIVE is
// mutual TLS for them. A proxy without certificates (Proxy.MTLS false) gets
// no TLS settings; its STRICT ports fail closed. tls.go has the details,
// docs/mtls.md the tables.
//
// Resource names are listed in names.go.
package translate
