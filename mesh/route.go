package mesh

import "time"

// RouteKind says which Gateway API kind a route came from.
type RouteKind string

const (
	RouteHTTP RouteKind = "HTTPRoute"
	RouteGRPC RouteKind = "GRPCRoute"
)

// Routes of one service port: what replaces the default "everything to this
// service" route when routes attach to the port (the GAMMA convention: a
// route whose parentRef is a Service). Rules are already merged across all
// routes attached to the port and sorted by Gateway API precedence, so
// translators emit them in order and the first match wins.
type PortRoutes struct {
	Port  PortKey
	Rules []RouteRule
}

// RouteRule is one rule of one route.
type RouteRule struct {
	// Route names the route the rule came from ("namespace/name") and its
	// index there, for names in xDS and for debugging.
	Route     string
	Kind      RouteKind
	RuleIndex int
	// MatchIndex is the index of the rule's match this entry is for.
	// Gateway API precedence orders matches, not rules, so discovery emits
	// one RouteRule per match of a rule (Matches then has one element) and
	// Route, RuleIndex and MatchIndex together name it uniquely.
	MatchIndex int
	// Matches are ORed; an empty list matches every request.
	Matches []RouteMatch
	// Backends share traffic by weight. A backend whose reference could not
	// be resolved has Invalid set: requests given to it fail (HTTP 500 on
	// Envoy, UNAVAILABLE on gRPC), as the Gateway API requires. When every
	// weight is zero, every request fails the same way.
	Backends []WeightedBackend
	Filters  RouteFilters
	// Timeout bounds the whole request including retries; BackendTimeout
	// one attempt. Zero means none.
	Timeout        time.Duration
	BackendTimeout time.Duration
	Retry          *RetryPolicy
}

// RouteMatch is one match of a rule: all its conditions must hold.
type RouteMatch struct {
	Path        *StringMatch
	Headers     []HeaderMatch
	QueryParams []HeaderMatch
	// Method is an HTTP method ("GET"); empty matches any.
	Method string
}

// MatchType says how a string is compared.
type MatchType string

const (
	MatchExact  MatchType = "Exact"
	MatchPrefix MatchType = "PathPrefix"
	MatchRegex  MatchType = "RegularExpression"
)

// StringMatch compares a path. GRPCRoute service/method matches arrive here
// already as paths ("/pkg.Service/Method" exact, "/pkg.Service/" prefix).
type StringMatch struct {
	Type  MatchType
	Value string
}

// HeaderMatch compares one header (or query parameter) by exact value or
// regular expression (RE2).
type HeaderMatch struct {
	Name  string
	Type  MatchType
	Value string
}

// WeightedBackend is one backendRef of a rule.
type WeightedBackend struct {
	// Port is the backend service port; zero value when Invalid.
	Port   PortKey
	Weight uint32
	// Invalid is set when the reference could not be resolved (missing
	// Service or port, not permitted across namespaces, unsupported kind).
	Invalid bool
}

// RouteFilters are the filters of a rule. Translators state what a proxy
// kind cannot do as a warning instead of ignoring it.
type RouteFilters struct {
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	// Mirror sends a copy of each request to this service port.
	Mirror *PortKey
	// Rewrite replaces the hostname and/or path prefix or full path.
	Rewrite *URLRewrite
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// Header is a name and a value.
type Header struct {
	Name  string
	Value string
}

// URLRewrite rewrites the request before it goes upstream.
type URLRewrite struct {
	Hostname string
	// Exactly one of FullPath and PrefixPath may be set.
	FullPath   string
	PrefixPath string
}

// RetryPolicy retries failed requests.
type RetryPolicy struct {
	Attempts uint32
	// Codes are HTTP status codes to retry on (5xx); for gRPC the
	// translator maps them to gRPC status codes it documents.
	Codes   []int
	Backoff time.Duration
}
