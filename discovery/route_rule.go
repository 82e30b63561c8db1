package discovery

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// compiledRule is one valid rule of a route in model terms: the rule
// without its matches, and its matches with their precedence.
type compiledRule struct {
	rule    mesh.RouteRule
	matches []compiledMatch
}

// compiledMatch is one match of a rule with what orders it.
type compiledMatch struct {
	match mesh.RouteMatch
	index int
	prec  precedence
}

// ruleContext is what compiling the rules of one route needs.
type ruleContext struct {
	kind      mesh.RouteKind
	namespace string
	route     string // "namespace/name"
	backends  backendResolver
	retry     *mesh.RetryPolicy // from the annotation
	// issues collects unresolved references of the rules kept.
	issues []refIssue
}

// ruleError is why a rule is dropped: a value Sluice does not support or
// that is invalid (an unsupported filter, a regular expression that does
// not compile).
type ruleError struct{ msg string }

func (e ruleError) Error() string { return e.msg }

func unsupported(format string, args ...any) error { return ruleError{fmt.Sprintf(format, args...)} }

// compileHTTPRule maps one HTTPRoute rule, or says why it is dropped.
func (c *ruleContext) compileHTTPRule(i int, r gatewayv1.HTTPRouteRule) (compiledRule, error) {
	out := compiledRule{rule: mesh.RouteRule{Route: c.route, Kind: c.kind, RuleIndex: i, Retry: c.retry}}
	matches := r.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.HTTPRouteMatch{{}} // a prefix match on "/"
	}
	for j, m := range matches {
		cm, err := httpMatch(m)
		if err != nil {
			return compiledRule{}, err
		}
		cm.index = j
		out.matches = append(out.matches, cm)
	}
	if r.Timeouts != nil {
		var err error
		if out.rule.Timeout, out.rule.BackendTimeout, err = httpTimeouts(r.Timeouts); err != nil {
			return compiledRule{}, err
		}
	}
	if r.Retry != nil {
		p, err := retryFromField(r.Retry)
		if err != nil {
			return compiledRule{}, unsupported("%v", err)
		}
		out.rule.Retry = p
	}
	var issues []refIssue
	filters, err := c.httpFilters(r.Filters, &issues)
	if err != nil {
		return compiledRule{}, err
	}
	out.rule.Filters = filters
	if rw := filters.Rewrite; rw != nil && rw.PrefixPath != "" {
		for _, m := range out.matches {
			if m.match.Path.Type != mesh.MatchPrefix {
				return compiledRule{}, unsupported("URL rewrite ReplacePrefixMatch needs PathPrefix matches, not %s", m.match.Path.Type)
			}
		}
	}
	refs := make([]gatewayv1.BackendRef, len(r.BackendRefs))
	for j, b := range r.BackendRefs {
		if len(b.Filters) > 0 {
			return compiledRule{}, unsupported("backendRef %d has filters; per-backend filters are not supported", j)
		}
		refs[j] = b.BackendRef
	}
	out.rule.Backends = c.backends.weightedBackends(string(c.kind), c.namespace, refs, &issues)
	c.issues = append(c.issues, issues...)
	return out, nil
}

// compileGRPCRule maps one GRPCRoute rule, or says why it is dropped.
func (c *ruleContext) compileGRPCRule(i int, r gatewayv1.GRPCRouteRule) (compiledRule, error) {
	out := compiledRule{rule: mesh.RouteRule{Route: c.route, Kind: c.kind, RuleIndex: i, Retry: c.retry}}
	matches := r.Matches
	if len(matches) == 0 {
		matches = []gatewayv1.GRPCRouteMatch{{}} // every request
	}
	for j, m := range matches {
		cm, err := grpcMatch(m)
		if err != nil {
			return compiledRule{}, err
		}
		cm.index = j
		out.matches = append(out.matches, cm)
	}
	var issues []refIssue
	var hf []gatewayv1.HTTPRouteFilter
	for _, f := range r.Filters {
		hf = append(hf, gatewayv1.HTTPRouteFilter{
			Type:                   gatewayv1.HTTPRouteFilterType(f.Type),
			RequestHeaderModifier:  f.RequestHeaderModifier,
			ResponseHeaderModifier: f.ResponseHeaderModifier,
			RequestMirror:          f.RequestMirror,
			ExtensionRef:           f.ExtensionRef,
		})
	}
	filters, err := c.httpFilters(hf, &issues)
	if err != nil {
		return compiledRule{}, err
	}
	out.rule.Filters = filters
	refs := make([]gatewayv1.BackendRef, len(r.BackendRefs))
	for j, b := range r.BackendRefs {
		if len(b.Filters) > 0 {
			return compiledRule{}, unsupported("backendRef %d has filters; per-backend filters are not supported", j)
		}
		refs[j] = b.BackendRef
	}
	out.rule.Backends = c.backends.weightedBackends(string(c.kind), c.namespace, refs, &issues)
	c.issues = append(c.issues, issues...)
	return out, nil
}

// httpMatch maps an HTTPRoute match. A missing path is a prefix match on
// "/", as the API defaults it.
func httpMatch(m gatewayv1.HTTPRouteMatch) (compiledMatch, error) {
	path := &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/"}
	if m.Path != nil {
		if m.Path.Type != nil {
			path.Type = mesh.MatchType(*m.Path.Type)
		}
		if m.Path.Value != nil {
			path.Value = *m.Path.Value
		}
	}
	switch path.Type {
	case mesh.MatchExact, mesh.MatchPrefix:
		if !strings.HasPrefix(path.Value, "/") {
			return compiledMatch{}, unsupported("path %q does not start with /", path.Value)
		}
	case mesh.MatchRegex:
		if err := checkRegex("path", path.Value); err != nil {
			return compiledMatch{}, err
		}
	default:
		return compiledMatch{}, unsupported("path match type %q is not supported", path.Type)
	}
	out := compiledMatch{match: mesh.RouteMatch{Path: path}}
	var err error
	if out.match.Headers, err = headerMatches("header", headerInputs(m.Headers), true); err != nil {
		return compiledMatch{}, err
	}
	if out.match.QueryParams, err = headerMatches("query parameter", queryInputs(m.QueryParams), false); err != nil {
		return compiledMatch{}, err
	}
	if m.Method != nil {
		out.match.Method = string(*m.Method)
	}
	out.prec = httpPrecedence(out.match)
	return out, nil
}

// grpcMatch maps a GRPCRoute match: its service and method become a path
// ("/pkg.Service/Method" exact, "/pkg.Service/" prefix, a regular
// expression for a method without a service or for RegularExpression).
func grpcMatch(m gatewayv1.GRPCRouteMatch) (compiledMatch, error) {
	var out compiledMatch
	if mm := m.Method; mm != nil {
		svc, method := deref(mm.Service), deref(mm.Method)
		typ := gatewayv1.GRPCMethodMatchExact
		if mm.Type != nil {
			typ = *mm.Type
		}
		var path *mesh.StringMatch
		switch typ {
		case gatewayv1.GRPCMethodMatchExact:
			if strings.Contains(svc, "/") || strings.Contains(method, "/") {
				return compiledMatch{}, unsupported("gRPC service %q and method %q must not contain /", svc, method)
			}
			switch {
			case svc != "" && method != "":
				path = &mesh.StringMatch{Type: mesh.MatchExact, Value: "/" + svc + "/" + method}
			case svc != "":
				path = &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/" + svc + "/"}
			case method != "":
				path = &mesh.StringMatch{Type: mesh.MatchRegex, Value: "/[^/]+/" + regexp.QuoteMeta(method)}
			}
		case gatewayv1.GRPCMethodMatchRegularExpression:
			if err := checkRegex("gRPC service", svc); err != nil {
				return compiledMatch{}, err
			}
			if err := checkRegex("gRPC method", method); err != nil {
				return compiledMatch{}, err
			}
			path = &mesh.StringMatch{Type: mesh.MatchRegex, Value: "/" + regexGroup(svc) + "/" + regexGroup(method)}
		default:
			return compiledMatch{}, unsupported("gRPC method match type %q is not supported", typ)
		}
		if path == nil {
			return compiledMatch{}, unsupported("a gRPC method match needs a service or a method")
		}
		out.match.Path = path
		out.prec.serviceLen, out.prec.methodLen = len(svc), len(method)
	}
	hs := make([]headerInput, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = headerInput{name: string(h.Name), value: h.Value, typ: "Exact"}
		if h.Type != nil {
			hs[i].typ = string(*h.Type)
		}
	}
	var err error
	if out.match.Headers, err = headerMatches("header", hs, true); err != nil {
		return compiledMatch{}, err
	}
	out.prec.headers = len(out.match.Headers)
	return out, nil
}

// regexGroup wraps a service or method regular expression so that its
// alternations stay inside its path segment; empty matches any segment.
func regexGroup(re string) string {
	if re == "" {
		return "[^/]+"
	}
	return "(?:" + re + ")"
}

// headerInput is a header or query parameter match of either route kind.
type headerInput struct{ name, value, typ string }

func headerInputs(hs []gatewayv1.HTTPHeaderMatch) []headerInput {
	out := make([]headerInput, len(hs))
	for i, h := range hs {
		out[i] = headerInput{name: string(h.Name), value: h.Value, typ: "Exact"}
		if h.Type != nil {
			out[i].typ = string(*h.Type)
		}
	}
	return out
}

func queryInputs(qs []gatewayv1.HTTPQueryParamMatch) []headerInput {
	out := make([]headerInput, len(qs))
	for i, q := range qs {
		out[i] = headerInput{name: string(q.Name), value: q.Value, typ: "Exact"}
		if q.Type != nil {
			out[i].typ = string(*q.Type)
		}
	}
	return out
}

// headerMatches maps header or query parameter matches. Of several entries
// with the same name only the first counts, as the API says; header names
// compare case-insensitively and are lowercased.
func headerMatches(what string, in []headerInput, foldCase bool) ([]mesh.HeaderMatch, error) {
	var out []mesh.HeaderMatch
	seen := map[string]bool{}
	for _, h := range in {
		name := h.name
		if foldCase {
			name = strings.ToLower(name)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		var typ mesh.MatchType
		switch h.typ {
		case "Exact":
			typ = mesh.MatchExact
		case "RegularExpression":
			typ = mesh.MatchRegex
			if err := checkRegex(what+" "+name, h.value); err != nil {
				return nil, err
			}
		default:
			return nil, unsupported("%s %s: match type %q is not supported", what, name, h.typ)
		}
		out = append(out, mesh.HeaderMatch{Name: name, Type: typ, Value: h.value})
	}
	return out, nil
}

// checkRegex reports a regular expression that is not RE2 (Go's regexp is
// RE2's syntax, which Envoy and gRPC use).
func checkRegex(what, re string) error {
	if _, err := regexp.Compile(re); err != nil {
		return unsupported("%s: invalid regular expression %q: %v", what, re, err)
	}
	return nil
}

func httpTimeouts(t *gatewayv1.HTTPRouteTimeouts) (request, backend time.Duration, err error) {
	if t.Request != nil {
		if request, err = parseGatewayDuration(*t.Request); err != nil {
			return 0, 0, unsupported("request timeout: %v", err)
		}
	}
	if t.BackendRequest != nil {
		if backend, err = parseGatewayDuration(*t.BackendRequest); err != nil {
			return 0, 0, unsupported("backendRequest timeout: %v", err)
		}
	}
	if request > 0 && backend > request {
		return 0, 0, unsupported("backendRequest timeout %s is longer than the request timeout %s", backend, request)
	}
	return request, backend, nil
}

// httpFilters maps the filters of a rule (GRPCRoute filters are a subset).
// Filters the model has no place for drop the rule rather than being
// ignored: a route that silently does less than it says is worse.
func (c *ruleContext) httpFilters(fs []gatewayv1.HTTPRouteFilter, issues *[]refIssue) (mesh.RouteFilters, error) {
	var out mesh.RouteFilters
	seen := map[gatewayv1.HTTPRouteFilterType]bool{}
	for _, f := range fs {
		if seen[f.Type] {
			return mesh.RouteFilters{}, unsupported("filter %s is repeated", f.Type)
		}
		seen[f.Type] = true
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			if f.RequestHeaderModifier == nil {
				return mesh.RouteFilters{}, unsupported("filter %s has no settings", f.Type)
			}
			out.RequestHeaders = headerModifier(f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			if f.ResponseHeaderModifier == nil {
				return mesh.RouteFilters{}, unsupported("filter %s has no settings", f.Type)
			}
			out.ResponseHeaders = headerModifier(f.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterURLRewrite:
			if c.kind != mesh.RouteHTTP || f.URLRewrite == nil {
				return mesh.RouteFilters{}, unsupported("filter %s is not supported here", f.Type)
			}
			rw, err := urlRewrite(f.URLRewrite)
			if err != nil {
				return mesh.RouteFilters{}, err
			}
			out.Rewrite = rw
		case gatewayv1.HTTPRouteFilterRequestMirror:
			m := f.RequestMirror
			if m == nil {
				return mesh.RouteFilters{}, unsupported("filter %s has no settings", f.Type)
			}
			if (m.Percent != nil && *m.Percent != 100) ||
				(m.Fraction != nil && (m.Fraction.Denominator == nil && m.Fraction.Numerator != 100 ||
					m.Fraction.Denominator != nil && m.Fraction.Numerator != *m.Fraction.Denominator)) {
				return mesh.RouteFilters{}, unsupported("mirroring a fraction of requests is not supported; only all of them")
			}
			pk, issue := c.backends.resolve(string(c.kind), c.namespace, m.BackendRef)
			if issue != nil {
				*issues = append(*issues, refIssue{issue.reason, "mirror " + issue.message})
				continue // nothing is mirrored
			}
			out.Mirror = &pk
		default:
			return mesh.RouteFilters{}, unsupported("filter %s is not supported", f.Type)
		}
	}
	return out, nil
}

func headerModifier(f *gatewayv1.HTTPHeaderFilter) *mesh.HeaderModifier {
	out := &mesh.HeaderModifier{}
	for _, h := range f.Set {
		out.Set = append(out.Set, mesh.Header{Name: string(h.Name), Value: h.Value})
	}
	for _, h := range f.Add {
		out.Add = append(out.Add, mesh.Header{Name: string(h.Name), Value: h.Value})
	}
	out.Remove = append(out.Remove, f.Remove...)
	return out
}

func urlRewrite(f *gatewayv1.HTTPURLRewriteFilter) (*mesh.URLRewrite, error) {
	out := &mesh.URLRewrite{}
	if f.Hostname != nil {
		out.Hostname = string(*f.Hostname)
	}
	if p := f.Path; p != nil {
		switch p.Type {
		case gatewayv1.FullPathHTTPPathModifier:
			out.FullPath = deref(p.ReplaceFullPath)
		case gatewayv1.PrefixMatchHTTPPathModifier:
			out.PrefixPath = deref(p.ReplacePrefixMatch)
		default:
			return nil, unsupported("URL rewrite path type %q is not supported", p.Type)
		}
	}
	return out, nil
}

func deref[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}
