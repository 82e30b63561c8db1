// Package discovery turns Kubernetes objects into immutable mesh snapshots.
//
// It is the edge of Sluice: the only package that reads Kubernetes objects.
// The stages, each consuming the previous one's output:
//
//	KubernetesSource (informers) ─┐
//	                              ├─▶ Store ─▶ Coalescer ─▶ Consumer.OnSnapshot(Update)
//	FileSource (--config-dir)  ───┘              │
//	                                             └─▶ ProblemReporter (Events, /debug)
//
// Each stage does one thing:
//
//   - Sources record objects (Services, EndpointSlices, Pods, Namespaces,
//     Nodes; HTTPRoutes, GRPCRoutes, ReferenceGrants) into a Store and do
//     nothing else.
//   - The Store keeps the current objects and what changed since the last
//     build, and notifies the Coalescer.
//   - The Coalescer waits a hold-off after a change (at most a maximum
//     delay), then builds a snapshot and publishes it, unless nothing in the
//     mesh changed. Endpoint-only changes take a fast path: only the
//     affected services' endpoints are rebuilt and the Update says
//     EndpointsOnly, sharing the previous services.
//   - BuildSnapshot is the same build as a pure function of a list of objects.
//
// # Mapping
//
// A Service becomes a mesh.Service with its TCP ports (UDP and SCTP ports
// are skipped; ExternalName services are not part of the mesh). A port's
// protocol comes from its appProtocol (kubernetes.io/h2c, kubernetes.io/ws,
// http, http2, h2c, grpc, grpc-web, tcp, https, tls, mongo, mysql, redis),
// else from its name's prefix before the first "-" with the same words
// ("http-web", "grpc", "tcp-db", Istio's convention), else DefaultProtocol,
// which is TCP. Load-balancing settings come from annotations, see
// AnnotationLBPolicy.
//
// EndpointSlices belong to the Service named by their
// kubernetes.io/service-name label; their ports match the Service's ports by
// name, and their endpoints become mesh.Endpoints keyed by the service port
// (mesh.PortKey), with the slice port as the endpoint's port. The health
// mapping: ready → Healthy; serving and terminating,
// or serving and not ready → Draining; not serving → Unhealthy; nil
// conditions as the API defines them. The zone is the endpoint's zone, else
// the topology.kubernetes.io/zone label of its node (the endpoint's
// nodeName, else its pod's). The pod named by targetRef gives Pod,
// ServiceAccount and Labels. An address in several slices is kept once,
// with the healthiest state. Topology hints are not used.
//
// # Routes
//
// HTTPRoutes and GRPCRoutes (gateway.networking.k8s.io/v1) attach to a
// Service through a parentRef with group "" and kind Service (GAMMA), to
// all its ports or to the one its port or sectionName (the port's name)
// selects; parentRefs to Gateways are other controllers' and ignored.
// Only producer routes are supported: a parentRef to a Service in another
// namespace is not accepted. Hostnames are ignored, as for mesh routes.
// The rules of all routes attached to a port are merged into
// mesh.Snapshot.Routes, one mesh.RouteRule per match, in Gateway API
// precedence order (see compareHTTPMatches, compareGRPCMatches). HTTPRoutes
// and GRPCRoutes do not share a port: the oldest route's kind wins it.
// GRPCRoute service and method matches become paths. backendRefs name mesh
// Services and a port; another namespace needs a ReferenceGrant (v1beta1)
// there. Unresolved backends stay, with their weight, as Invalid backends.
// Retries come from HTTPRoute's (experimental) retry field, else the
// AnnotationRetry annotation; timeouts from HTTPRoute rules' timeouts. A
// rule Sluice cannot honour (an invalid regular expression, a filter the
// model has no place for: RequestRedirect, CORS, ExternalAuth,
// ExtensionRef, per-backend filters, a partial mirror) is dropped.
//
// Each route's status (RouteStatus: Accepted, ResolvedRefs and
// PartiallyInvalid per Service parentRef) is computed with every build and
// handed to the RouteStatusReporters; RouteStatusWriter writes it while
// this replica is the leader (LeaderElector). Failed conditions are also
// Problems with the condition's reason.
//
// # Bad input
//
// Nothing in one object affects another service. Invalid objects or values
// are skipped or replaced by defaults and reported as a Problem (kind,
// namespace, name, reason, message): in Update.Problems, Coalescer.Problems,
// the sluice_discovery_problems metrics, a Warning Event on the object
// (Kubernetes source) and mesh.Service.Warnings for a served service.
package discovery
