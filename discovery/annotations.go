package discovery

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mesh/sluice/mesh"
)

// Load-balancing annotations. They are read from the Service, and from its
// Namespace as defaults for every Service in it (a Service annotation wins).
//
//	Annotation                    Values                                    Default
//	----------------------------  ----------------------------------------  -----------
//	sluice.dev/lb-policy          round_robin | least_request |             round_robin
//	                              ring_hash | random
//	sluice.dev/hash-on            header:<name> | cookie:<name> |           (none)
//	                              source-ip; required by ring_hash,
//	                              rejected with any other policy
//	sluice.dev/locality-aware     true | false                              true
//	sluice.dev/outlier-detection  off | on | comma-separated key=value:     off
//	                              consecutive5xx=<n≥1>, interval=<dur>,
//	                              baseEjectionTime=<dur> (alias
//	                              baseEjection), maxEjectionPercent=<0-100>;
//	                              keys left out take the "on" defaults
//	                              5, 10s, 30s, 10
//	sluice.dev/connect-timeout    Go duration > 0 ("250ms", "2s")           1s
//	sluice.dev/slow-start         Go duration > 0: ramp a newly ready       off
//	                              endpoint's share of new requests up over
//	                              this window (Envoy only); "off" or "0s"
//	                              turn it off
//
// Durations use Go syntax (time.ParseDuration). Values are trimmed and
// compared case-insensitively, except header and cookie names (header names
// are lowercased, cookie names are kept as written). A value that does not
// parse is replaced by the default, reported as a Problem with reason
// InvalidAnnotation (an Event on the object) and listed in the
// mesh.Service's Warnings; the Service is still served. What a proxy kind
// cannot do with a valid setting (random for proxyless gRPC, cookie hashing)
// is for the translators to report.
const (
	AnnotationLBPolicy         = "sluice.dev/lb-policy"
	AnnotationHashOn           = "sluice.dev/hash-on"
	AnnotationLocalityAware    = "sluice.dev/locality-aware"
	AnnotationOutlierDetection = "sluice.dev/outlier-detection"
	AnnotationConnectTimeout   = "sluice.dev/connect-timeout"
	AnnotationSlowStart        = "sluice.dev/slow-start"
)

// Defaults of the load-balancing annotations.
const (
	DefaultLBPolicy      = mesh.LBRoundRobin
	DefaultLocalityAware = true
	// DefaultConnectTimeout is what Envoy clusters get when the annotation
	// is absent (the model then says 0: not set; see translate).
	DefaultConnectTimeout = time.Second
)

// DefaultOutlierDetection is used for "sluice.dev/outlier-detection: on" and
// for the keys a key=value list leaves out (Envoy's defaults).
var DefaultOutlierDetection = mesh.OutlierDetection{
	Consecutive5xx:     5,
	Interval:           10 * time.Second,
	BaseEjectionTime:   30 * time.Second,
	MaxEjectionPercent: 10,
}

// annotationError is an invalid annotation value; fromNamespace says whether
// the value came from the Namespace (so the Problem names the Namespace).
type annotationError struct {
	fromNamespace bool
	message       string
}

// annotationSource looks annotations up on a Service, then its Namespace.
type annotationSource struct {
	service, namespace map[string]string
	errs               []annotationError
}

func (s *annotationSource) get(key string) (value string, fromNamespace, ok bool) {
	if v, ok := s.service[key]; ok {
		return strings.TrimSpace(v), false, true
	}
	if v, ok := s.namespace[key]; ok {
		return strings.TrimSpace(v), true, true
	}
	return "", false, false
}

func (s *annotationSource) fail(fromNamespace bool, format string, args ...any) {
	s.errs = append(s.errs, annotationError{fromNamespace: fromNamespace, message: fmt.Sprintf(format, args...)})
}

// parseLoadBalancing reads the load-balancing settings of a service from its
// annotations and its namespace's.
func parseLoadBalancing(service, namespace map[string]string) (mesh.LoadBalancing, []annotationError) {
	src := &annotationSource{service: service, namespace: namespace}
	lb := mesh.LoadBalancing{
		Policy:         src.policy(),
		LocalityAware:  src.localityAware(),
		Outlier:        src.outlier(),
		ConnectTimeout: src.connectTimeout(),
		SlowStart:      src.slowStart(),
	}
	hash, hashFromNS := src.hash()
	switch {
	case lb.Policy == mesh.LBRingHash && hash == nil:
		_, fromNS, _ := src.get(AnnotationLBPolicy)
		src.fail(fromNS, "%s ring_hash needs a valid %s (header:<name>, cookie:<name> or source-ip); using %s",
			AnnotationLBPolicy, AnnotationHashOn, DefaultLBPolicy)
		lb.Policy = DefaultLBPolicy
	case lb.Policy != mesh.LBRingHash && hash != nil:
		src.fail(hashFromNS, "%s is only used with %s ring_hash, not %s; ignored", AnnotationHashOn, AnnotationLBPolicy, lb.Policy)
	case hash != nil:
		lb.Hash = hash
	}
	return lb, src.errs
}

func (s *annotationSource) policy() mesh.LBPolicy {
	v, fromNS, ok := s.get(AnnotationLBPolicy)
	if !ok {
		return DefaultLBPolicy
	}
	switch p := mesh.LBPolicy(strings.ToLower(v)); p {
	case mesh.LBRoundRobin, mesh.LBLeastRequest, mesh.LBRingHash, mesh.LBRandom:
		return p
	}
	s.fail(fromNS, "invalid %s %q: want round_robin, least_request, ring_hash or random; using %s", AnnotationLBPolicy, v, DefaultLBPolicy)
	return DefaultLBPolicy
}

// hash returns the parsed hash-on annotation, nil when absent or invalid.
func (s *annotationSource) hash() (h *mesh.HashPolicy, fromNamespace bool) {
	v, fromNS, ok := s.get(AnnotationHashOn)
	if !ok {
		return nil, false
	}
	kind, name, hasName := strings.Cut(v, ":")
	switch kind = strings.ToLower(strings.TrimSpace(kind)); {
	case kind == "source-ip" && !hasName:
		return &mesh.HashPolicy{SourceIP: true}, fromNS
	case kind == "header" && hasName && isHeaderName(strings.TrimSpace(name)):
		return &mesh.HashPolicy{Header: strings.ToLower(strings.TrimSpace(name))}, fromNS
	case kind == "cookie" && hasName && isToken(strings.TrimSpace(name)):
		return &mesh.HashPolicy{Cookie: strings.TrimSpace(name)}, fromNS
	}
	s.fail(fromNS, "invalid %s %q: want header:<name>, cookie:<name> or source-ip; not hashing", AnnotationHashOn, v)
	return nil, fromNS
}

func (s *annotationSource) localityAware() bool {
	v, fromNS, ok := s.get(AnnotationLocalityAware)
	if !ok {
		return DefaultLocalityAware
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		s.fail(fromNS, "invalid %s %q: want true or false; using %t", AnnotationLocalityAware, v, DefaultLocalityAware)
		return DefaultLocalityAware
	}
	return b
}

func (s *annotationSource) connectTimeout() time.Duration {
	v, fromNS, ok := s.get(AnnotationConnectTimeout)
	if !ok {
		return 0 // not set: the proxy's default
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		s.fail(fromNS, "invalid %s %q: want a positive duration such as 250ms or 2s; using the default %s", AnnotationConnectTimeout, v, DefaultConnectTimeout)
		return 0
	}
	return d
}

func (s *annotationSource) slowStart() time.Duration {
	v, fromNS, ok := s.get(AnnotationSlowStart)
	if !ok || strings.EqualFold(v, "off") {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		s.fail(fromNS, "invalid %s %q: want a duration such as 30s, or off; slow start off", AnnotationSlowStart, v)
		return 0
	}
	return d
}

func (s *annotationSource) outlier() *mesh.OutlierDetection {
	v, fromNS, ok := s.get(AnnotationOutlierDetection)
	if !ok {
		return nil
	}
	switch strings.ToLower(v) {
	case "off", "false":
		return nil
	case "on", "true":
		od := DefaultOutlierDetection
		return &od
	}
	od, err := parseOutlier(v)
	if err != nil {
		s.fail(fromNS, "invalid %s %q: %v; outlier detection off", AnnotationOutlierDetection, v, err)
		return nil
	}
	return od
}

// parseOutlier parses "consecutive5xx=5,interval=10s,...".
func parseOutlier(v string) (*mesh.OutlierDetection, error) {
	od := DefaultOutlierDetection
	for field := range strings.SplitSeq(v, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(field), "=")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !ok || val == "" {
			return nil, fmt.Errorf("%q is not key=value", field)
		}
		var err error
		switch key {
		case "consecutive5xx":
			od.Consecutive5xx, err = parseUint(val, 1, 1<<31)
		case "maxejectionpercent":
			od.MaxEjectionPercent, err = parseUint(val, 0, 100)
		case "interval":
			od.Interval, err = parsePositiveDuration(val)
		case "baseejectiontime", "baseejection":
			od.BaseEjectionTime, err = parsePositiveDuration(val)
		default:
			return nil, fmt.Errorf("unknown key %q (want consecutive5xx, interval, baseEjectionTime, maxEjectionPercent)", key)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return &od, nil
}

func parseUint(v string, minimum, maximum uint64) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", v)
	}
	if n < minimum || n > maximum {
		return 0, fmt.Errorf("%d is outside %d-%d", n, minimum, maximum)
	}
	return uint32(n), nil
}

func parsePositiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s is not positive", d)
	}
	return d, nil
}

// isHeaderName reports whether s is an HTTP header name: a token, or a
// pseudo-header such as ":authority".
func isHeaderName(s string) bool {
	return isToken(strings.TrimPrefix(s, ":"))
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
