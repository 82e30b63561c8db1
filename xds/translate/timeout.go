package translate

import (
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-mesh/sluice/mesh"
)

// Route timeouts. The Gateway API's request timeout bounds the whole
// request, retries included; its backendRequest timeout bounds one
// attempt.
//
//   - Envoy: route timeout (which covers retries) and the retry policy's
//     per_try_timeout. Zero disables the route timeout, as for routes
//     without one, so long-lived streams are not cut.
//   - grpc-go has no per-route timeout but honours max_stream_duration
//     (grpc_timeout_header_max if set, else max_stream_duration) as the
//     RPC's deadline when that is shorter than the client's, across
//     retries: the request timeout goes there. It has no per-attempt
//     timeout, so with retries the backendRequest timeout is dropped with
//     a warning.
//
// Without retries a request is one attempt: the backendRequest timeout
// then bounds the request and both kinds use the shorter of the two.

// ruleTimeouts returns the rule's request and per-attempt timeouts, zero
// meaning none, the per-attempt one only when the rule retries.
func (t *translator) ruleTimeouts(who string, r *mesh.RouteRule) (total, perTry time.Duration) {
	total, perTry = r.Timeout, r.BackendTimeout
	if total < 0 {
		t.warnf("%s: negative request timeout %s: no timeout", who, total)
		total = 0
	}
	if perTry < 0 {
		t.warnf("%s: negative backend request timeout %s: no timeout", who, perTry)
		perTry = 0
	}
	if r.Retry == nil && perTry > 0 {
		if total == 0 || perTry < total {
			total = perTry
		}
		perTry = 0
	}
	return total, perTry
}

// setTimeout sets the request timeout of a route action.
func (t *translator) setTimeout(who string, r *mesh.RouteRule, total, perTry time.Duration, ra *routev3.RouteAction) {
	if t.kind == mesh.ProxyEnvoy {
		ra.Timeout = durationpb.New(total)
		return
	}
	if perTry > 0 {
		t.warnf("%s: proxyless gRPC has no per-attempt timeout: backend request timeout %s ignored", who, perTry)
	}
	if total > 0 {
		ra.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(total)}
	}
}
