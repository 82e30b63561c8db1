package translate

import (
	"errors"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

// Route matches. Both Envoy and grpc-go take path (exact), prefix and
// safe_regex path matches and exact or safe_regex header matches; regular
// expressions are RE2 (grpc-go compiles them with Go's regexp, whose
// syntax is RE2's) and must match the whole value. Beyond that:
//
//   - Gateway API prefixes match whole path segments ("/foo" matches
//     "/foo" and "/foo/bar", not "/foobar"). Envoy has exactly that
//     (path_separated_prefix); grpc-go NACKs it, so gRPC gets a plain
//     prefix when the value ends in "/" (GRPCRoute service matches arrive
//     as "/pkg.Service/") and otherwise the equivalent regex "<v>(/.*)?".
//   - grpc-go skips routes with query parameter matches; a gRPC request
//     has no query string, so such a match never matches and is left out.
//   - Every gRPC request is a POST: a method match on POST always holds and
//     is dropped, any other method never holds and the match is left out.
//   - grpc-go matches headers against the RPC's metadata, which has no
//     pseudo-headers and drops binary (-bin) headers: such a match never
//     holds and is left out.
//
// A match that cannot be translated (invalid regex, bad header name) is
// left out with a warning; it must never reach a proxy, which would NACK
// the whole route configuration.

// pathSpec says how a route matches the path, for the URL rewrite.
type pathSpec struct {
	typ mesh.MatchType
	// value is the exact path, the regex, or the prefix without its
	// trailing slashes ("" for "/").
	value string
}

// routeMatch translates one match; ok is false when it is left out.
func (t *translator) routeMatch(who string, m *mesh.RouteMatch) (*routev3.RouteMatch, pathSpec, bool) {
	rm, path, ok := t.pathMatch(who, m.Path)
	if !ok {
		return nil, path, false
	}
	grpc := t.kind == mesh.ProxyGRPC
	if len(m.QueryParams) > 0 && grpc {
		t.warnf("%s: query parameter matches never match a gRPC request: match left out", who)
		return nil, path, false
	}
	for _, h := range m.Headers {
		hm, ok := t.headerMatcher(who, h)
		if !ok {
			return nil, path, false
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, q := range m.QueryParams {
		sm, ok := t.stringMatcher(who, "query parameter "+q.Name, q.Type, q.Value)
		if !ok {
			return nil, path, false
		}
		if q.Name == "" || len(q.Name) > 1024 {
			t.warnf("%s: invalid query parameter name %q: match left out", who, q.Name)
			return nil, path, false
		}
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm},
		})
	}
	if method := strings.TrimSpace(m.Method); method != "" {
		switch {
		case !validMethod(method):
			t.warnf("%s: invalid method %q: match left out", who, m.Method)
			return nil, path, false
		case grpc && method == "POST":
			// Every RPC is a POST.
		case grpc:
			t.warnf("%s: method %s never matches a gRPC request (always POST): match left out", who, method)
			return nil, path, false
		default:
			rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
				Name:                 ":method",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exactString(method)},
			})
		}
	}
	return rm, path, true
}

// pathMatch translates the path condition; nil matches every path.
func (t *translator) pathMatch(who string, p *mesh.StringMatch) (*routev3.RouteMatch, pathSpec, bool) {
	prefix := func(v string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: v}}
	}
	if p == nil {
		return prefix("/"), pathSpec{typ: mesh.MatchPrefix}, true
	}
	switch p.Type {
	case mesh.MatchExact:
		if !strings.HasPrefix(p.Value, "/") || strings.ContainsAny(p.Value, "?#") || !validHeaderValue(p.Value) {
			t.warnf("%s: exact path %q is not an absolute path without query: match left out", who, p.Value)
			return nil, pathSpec{}, false
		}
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p.Value}}, pathSpec{typ: mesh.MatchExact, value: p.Value}, true
	case mesh.MatchPrefix, "":
		if !strings.HasPrefix(p.Value, "/") || strings.ContainsAny(p.Value, "?#") || !validHeaderValue(p.Value) {
			t.warnf("%s: path prefix %q is not an absolute path without query: match left out", who, p.Value)
			return nil, pathSpec{}, false
		}
		v := strings.TrimRight(p.Value, "/")
		spec := pathSpec{typ: mesh.MatchPrefix, value: v}
		switch {
		case v == "":
			return prefix("/"), spec, true
		case t.kind == mesh.ProxyEnvoy:
			return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: v}}, spec, true
		case strings.HasSuffix(p.Value, "/"):
			// A gRPC path is always /<service>/<method>: "/pkg.Service/"
			// as a plain prefix misses only the path "/pkg.Service", which
			// no RPC has.
			return prefix(v + "/"), spec, true
		default:
			return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
				Regex: regexp.QuoteMeta(v) + "(/.*)?",
			}}}, spec, true
		}
	case mesh.MatchRegex:
		if err := checkRegex(p.Value); err != nil {
			t.warnf("%s: path regex %q: %v: match left out", who, p.Value, err)
			return nil, pathSpec{}, false
		}
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p.Value}}},
			pathSpec{typ: mesh.MatchRegex, value: p.Value}, true
	}
	t.warnf("%s: unknown path match type %q: match left out", who, p.Type)
	return nil, pathSpec{}, false
}

// headerMatcher matches one header by exact value or regex. Header names
// are case-insensitive in the Gateway API and lower case in both proxies.
func (t *translator) headerMatcher(who string, h mesh.HeaderMatch) (*routev3.HeaderMatcher, bool) {
	name := strings.ToLower(strings.TrimSpace(h.Name))
	pseudo := strings.HasPrefix(name, ":") && validToken(name[1:])
	if !validToken(name) && !pseudo {
		t.warnf("%s: invalid header name %q: match left out", who, h.Name)
		return nil, false
	}
	if t.kind == mesh.ProxyGRPC && (pseudo || strings.HasSuffix(name, "-bin")) {
		t.warnf("%s: header %q is not visible to proxyless gRPC's route matching (pseudo or binary header): match left out", who, name)
		return nil, false
	}
	sm, ok := t.stringMatcher(who, "header "+name, h.Type, h.Value)
	if !ok {
		return nil, false
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}, true
}

// stringMatcher compares a header or query parameter value.
func (t *translator) stringMatcher(who, what string, typ mesh.MatchType, value string) (*matcherv3.StringMatcher, bool) {
	switch typ {
	case mesh.MatchExact, "":
		if !validHeaderValue(value) {
			t.warnf("%s: %s value %q has control characters: match left out", who, what, value)
			return nil, false
		}
		return exactString(value), true
	case mesh.MatchRegex:
		if err := checkRegex(value); err != nil {
			t.warnf("%s: %s regex %q: %v: match left out", who, what, value, err)
			return nil, false
		}
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}}, true
	}
	t.warnf("%s: %s match type %q is not supported (Exact or RegularExpression): match left out", who, what, typ)
	return nil, false
}

func exactString(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

// checkRegex compiles a regular expression the way grpc-go does (Go's
// regexp, RE2 syntax). Envoy's RE2 also limits a program's size (100 by
// default, runtime key re2.max_program_size.error_level), which cannot be
// checked here; see docs/routing.md.
func checkRegex(re string) error {
	if re == "" {
		return errors.New("empty regular expression")
	}
	_, err := regexp.Compile(re)
	return err
}

// validToken accepts an RFC 7230 token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isTokenChar(r) {
			return false
		}
	}
	return true
}

// validMethod accepts an upper-case HTTP method token.
func validMethod(s string) bool {
	if !validToken(s) {
		return false
	}
	return strings.ToUpper(s) == s
}

// validHeaderValue refuses NUL, CR and LF, which Envoy rejects in header
// values, paths and rewrites.
func validHeaderValue(s string) bool {
	return !strings.ContainsAny(s, "\x00\r\n")
}
