package discovery

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// AnnotationRetry sets the retry policy of every rule of an HTTPRoute or
// GRPCRoute. The standard channel of Gateway API v1.6 has no retry field
// (HTTPRoute's spec.rules[].retry is experimental); where that field is set
// it wins over the annotation for its rule.
//
//	sluice.dev/retry: off | on | comma-separated key=value:
//	  attempts=<0-10>        retries after the first try (default 1; 0 = off)
//	  codes=<code>|<code>…   HTTP status codes 400-599 to retry on
//	                         (default 503); for gRPC the translator maps
//	                         them to gRPC status codes
//	  backoff=<duration>     base interval between retries (default: the
//	                         proxy's own, 25ms on Envoy and gRPC)
//
// For example "attempts=3, codes=502|503|504, backoff=50ms". A value that
// does not parse is reported as an InvalidAnnotation problem on the route,
// whose rules then do not retry.
const AnnotationRetry = "sluice.dev/retry"

// Defaults of a retry policy whose keys are left out.
const (
	DefaultRetryAttempts = 1
	DefaultRetryCode     = 503
	maxRetryAttempts     = 10
)

// parseRetryAnnotation returns the route's annotated retry policy, nil when
// absent, off or invalid (err says why).
func parseRetryAnnotation(annotations map[string]string) (*mesh.RetryPolicy, error) {
	v, ok := annotations[AnnotationRetry]
	if !ok {
		return nil, nil
	}
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "off", "false":
		return nil, nil
	case "on", "true":
		return defaultRetryPolicy(), nil
	}
	p := defaultRetryPolicy()
	for field := range strings.SplitSeq(v, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(field), "=")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !ok || val == "" {
			return nil, fmt.Errorf("invalid %s %q: %q is not key=value; not retrying", AnnotationRetry, v, field)
		}
		var err error
		switch key {
		case "attempts":
			p.Attempts, err = parseUint(val, 0, maxRetryAttempts)
		case "codes":
			p.Codes, err = parseRetryCodes(val)
		case "backoff":
			p.Backoff, err = parsePositiveDuration(val)
		default:
			err = fmt.Errorf("unknown key %q (want attempts, codes, backoff)", key)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid %s %q: %s: %w; not retrying", AnnotationRetry, v, key, err)
		}
	}
	if p.Attempts == 0 {
		return nil, nil
	}
	return p, nil
}

func defaultRetryPolicy() *mesh.RetryPolicy {
	return &mesh.RetryPolicy{Attempts: DefaultRetryAttempts, Codes: []int{DefaultRetryCode}}
}

func parseRetryCodes(v string) ([]int, error) {
	var codes []int
	for s := range strings.SplitSeq(v, "|") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 400 || n > 599 {
			return nil, fmt.Errorf("%q is not an HTTP status code 400-599", strings.TrimSpace(s))
		}
		codes = append(codes, n)
	}
	slices.Sort(codes)
	return slices.Compact(codes), nil
}

// retryFromField maps HTTPRoute's (experimental) retry field.
func retryFromField(r *gatewayv1.HTTPRouteRetry) (*mesh.RetryPolicy, error) {
	p := defaultRetryPolicy()
	if r.Attempts != nil {
		if *r.Attempts < 0 || *r.Attempts > maxRetryAttempts {
			return nil, fmt.Errorf("retry attempts %d is outside 0-%d", *r.Attempts, maxRetryAttempts)
		}
		p.Attempts = uint32(*r.Attempts)
	}
	if len(r.Codes) > 0 {
		p.Codes = nil
		for _, c := range r.Codes {
			if c < 400 || c > 599 {
				return nil, fmt.Errorf("retry code %d is not an HTTP status code 400-599", c)
			}
			p.Codes = append(p.Codes, int(c))
		}
		slices.Sort(p.Codes)
		p.Codes = slices.Compact(p.Codes)
	}
	if r.Backoff != nil {
		d, err := parseGatewayDuration(*r.Backoff)
		if err != nil {
			return nil, fmt.Errorf("retry backoff: %w", err)
		}
		p.Backoff = d
	}
	if p.Attempts == 0 {
		return nil, nil
	}
	return p, nil
}

// parseGatewayDuration parses a Gateway API duration (GEP-2257: "1h",
// "500ms", "1m30s"); "0s" is zero, which means none.
func parseGatewayDuration(d gatewayv1.Duration) (time.Duration, error) {
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", string(d))
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", string(d))
	}
	return v, nil
}
