package translate

import (
	"slices"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// Retries. The model gives attempts (retries after the first try, 1 when
// unset), HTTP status codes to retry on and a backoff.
//
// Envoy retries on connection errors (connect-failure, refused-stream,
// reset), as the Gateway API says it should whenever retries are set, and
// on the listed codes (retriable-status-codes). A gRPC backend answers
// HTTP 200 with a grpc-status, so for GRPCRoute rules and grpc ports the
// codes are also given as the gRPC conditions below. A retry goes to
// another endpoint when there is one (previous_hosts predicate).
//
// grpc-go retries only on gRPC status codes, and knows five: cancelled,
// deadline-exceeded, internal, resource-exhausted, unavailable. HTTP codes
// map to them by the HTTP mapping of google.rpc.Code (the one Envoy uses
// to answer gRPC calls with HTTP statuses), plus 502 (a gateway that could
// not reach the backend) as unavailable:
//
//	429 resource-exhausted   499 cancelled   500 internal
//	502 unavailable          503 unavailable 504 deadline-exceeded
//
// Other codes have no gRPC equivalent grpc-go retries on and are dropped
// with a warning. unavailable is always included: it is how a connection
// error reaches a gRPC call (RPCs that never left the client are retried
// by grpc-go anyway, transparently).

// grpcRetryOn maps an HTTP status code to grpc-go's retry condition.
func grpcRetryOn(code int) (string, bool) {
	switch code {
	case 429:
		return "resource-exhausted", true
	case 499:
		return "cancelled", true
	case 500:
		return "internal", true
	case 502, 503:
		return "unavailable", true
	case 504:
		return "deadline-exceeded", true
	}
	return "", false
}

// envoyConnectionRetryOn are Envoy's connection-error retry conditions.
const envoyConnectionRetryOn = "connect-failure,refused-stream,reset"

// retryPolicy returns the retry policy of a rule's route, or nil.
func (t *translator) retryPolicy(who string, sp servicePort, r *mesh.RouteRule, perTry time.Duration) *routev3.RetryPolicy {
	rp := r.Retry
	if rp == nil {
		return nil
	}
	var codes []uint32
	var grpcNames []string
	var unmapped []string
	for _, c := range rp.Codes {
		if c < 400 || c > 599 {
			t.warnf("%s: retry code %d is not a 4xx or 5xx status: ignored", who, c)
			continue
		}
		codes = append(codes, uint32(c))
		if name, ok := grpcRetryOn(c); ok {
			grpcNames = append(grpcNames, name)
		} else {
			unmapped = append(unmapped, strconv.Itoa(c))
		}
	}
	slices.Sort(codes)
	codes = slices.Compact(codes)
	grpcNames = append(grpcNames, "unavailable")
	slices.Sort(grpcNames)
	grpcNames = slices.Compact(grpcNames)

	out := &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(max(rp.Attempts, 1))}
	switch {
	case rp.Backoff < 0:
		t.warnf("%s: negative retry backoff %s: using the default", who, rp.Backoff)
	case rp.Backoff > 0:
		out.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(max(rp.Backoff, time.Millisecond))}
	}

	if t.kind == mesh.ProxyGRPC {
		if len(unmapped) > 0 {
			t.warnf("%s: retry codes %s have no gRPC status proxyless gRPC retries on: ignored", who, strings.Join(unmapped, ", "))
		}
		out.RetryOn = strings.Join(grpcNames, ",")
		return out
	}
	retryOn := []string{envoyConnectionRetryOn}
	if len(codes) > 0 {
		retryOn = append(retryOn, "retriable-status-codes")
		out.RetriableStatusCodes = codes
	}
	if r.Kind == mesh.RouteGRPC || sp.port.Protocol == mesh.ProtocolGRPC {
		retryOn = append(retryOn, grpcNames...)
	}
	out.RetryOn = strings.Join(retryOn, ",")
	if perTry > 0 {
		out.PerTryTimeout = durationpb.New(perTry)
	}
	out.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{
		Name:       "envoy.retry_host_predicates.previous_hosts",
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: t.any(&previoushostsv3.PreviousHostsPredicate{})},
	}}
	out.HostSelectionRetryMaxAttempts = 5
	return out
}
