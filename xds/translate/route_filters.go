package translate

import (
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

// Route filters: header modification, request mirroring and URL rewrite.
// Envoy does them all on the route. grpc-go does none of them (it ignores
// header additions, mirror policies and rewrites on a route), so for a
// proxyless gRPC client each is left out with a warning.

// applyFilters sets the filters of a rule on its route; the path rewrite,
// which depends on the match, is set per match by pathRewrite.
func (t *translator) applyFilters(who string, r *mesh.RouteRule, route *routev3.Route, ra *routev3.RouteAction) {
	f := r.Filters
	if t.kind == mesh.ProxyGRPC {
		if !emptyModifier(f.RequestHeaders) {
			t.warnf("%s: request header modifier is not supported by proxyless gRPC: ignored", who)
		}
		if !emptyModifier(f.ResponseHeaders) {
			t.warnf("%s: response header modifier is not supported by proxyless gRPC: ignored", who)
		}
		if f.Mirror != nil {
			t.warnf("%s: request mirroring is not supported by proxyless gRPC: ignored", who)
		}
		if rw := f.Rewrite; rw != nil && (rw.Hostname != "" || rw.FullPath != "" || rw.PrefixPath != "") {
			t.warnf("%s: URL rewrite is not supported by proxyless gRPC: ignored", who)
		}
		return
	}
	route.RequestHeadersToAdd, route.RequestHeadersToRemove = t.headerModifier(who, "request", f.RequestHeaders)
	route.ResponseHeadersToAdd, route.ResponseHeadersToRemove = t.headerModifier(who, "response", f.ResponseHeaders)
	if m := f.Mirror; m != nil {
		if _, ok := t.portIndex[*m]; ok {
			ra.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: ClusterName(*m, t.domain)}}
		} else {
			t.warnf("%s: mirror %s/%s:%d is not a service port of the mesh: not mirrored", who, m.Namespace, m.Name, m.Port)
		}
	}
	if rw := f.Rewrite; rw != nil && rw.Hostname != "" {
		if validHeaderValue(rw.Hostname) && !strings.ContainsAny(rw.Hostname, " /") {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Hostname}
		} else {
			t.warnf("%s: invalid rewrite hostname %q: not rewritten", who, rw.Hostname)
		}
	}
}

func emptyModifier(m *mesh.HeaderModifier) bool {
	return m == nil || len(m.Set)+len(m.Add)+len(m.Remove) == 0
}

// headerModifier translates a header modifier: Set overwrites, Add
// appends to existing values, Remove removes. Names are lower case. Envoy
// refuses to touch pseudo-headers and, on requests, Host: those are left
// out with a warning (Host is changed by the URL rewrite filter).
func (t *translator) headerModifier(who, what string, m *mesh.HeaderModifier) ([]*corev3.HeaderValueOption, []string) {
	if m == nil {
		return nil, nil
	}
	allowed := func(name string) bool {
		switch {
		case !validToken(name):
			t.warnf("%s: %s header modifier: invalid header name %q: skipped", who, what, name)
			return false
		case what == "request" && name == "host":
			t.warnf("%s: request header modifier cannot change host (use a URL rewrite): skipped", who)
			return false
		}
		return true
	}
	var add []*corev3.HeaderValueOption
	for _, group := range []struct {
		headers []mesh.Header
		action  corev3.HeaderValueOption_HeaderAppendAction
	}{
		{m.Set, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{m.Add, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD},
	} {
		for _, h := range group.headers {
			name := strings.ToLower(strings.TrimSpace(h.Name))
			if !allowed(name) {
				continue
			}
			if !validHeaderValue(h.Value) {
				t.warnf("%s: %s header modifier: value of %q has control characters: skipped", who, what, name)
				continue
			}
			add = append(add, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: name, Value: h.Value},
				AppendAction: group.action,
			})
		}
	}
	var remove []string
	for _, n := range m.Remove {
		name := strings.ToLower(strings.TrimSpace(n))
		if allowed(name) {
			remove = append(remove, name)
		}
	}
	return add, remove
}

// pathRewrite sets the path rewrite of one match's route (Envoy only).
//
//   - FullPath replaces the whole path (not the query): regex_rewrite of
//     "^/.*$".
//   - PrefixPath replaces the matched prefix, segment-wise as the Gateway
//     API defines it: prefix_rewrite, except where Envoy's plain prefix
//     swap would glue segments together or double a slash, which get a
//     regex_rewrite instead ("/foo" -> "/": "/foo/bar" becomes "/bar").
//     It needs a prefix (or exact path) match; with a regex match it is
//     ignored with a warning.
func (t *translator) pathRewrite(who string, rw *mesh.URLRewrite, path pathSpec, ra *routev3.RouteAction) {
	regexRewrite := func(pattern, substitution string) {
		ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: pattern},
			Substitution: substitution,
		}
	}
	full, prefix := rw.FullPath, rw.PrefixPath
	if full != "" && prefix != "" {
		t.warnf("%s: URL rewrite sets both a full path and a prefix: using the full path", who)
		prefix = ""
	}
	for _, p := range []string{full, prefix} {
		if p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") || !validHeaderValue(p)) {
			t.warnf("%s: rewrite path %q is not an absolute path without query: not rewritten", who, p)
			return
		}
	}
	switch {
	case full != "":
		// In an RE2 substitution a backslash escapes; the path is literal.
		regexRewrite("^/.*$", strings.ReplaceAll(full, `\`, `\\`))
	case prefix == "":
	case path.typ == mesh.MatchRegex:
		t.warnf("%s: a prefix rewrite needs a path prefix match, not a regex: not rewritten", who)
	default:
		from := path.value // "" for "/"
		to := strings.TrimRight(prefix, "/")
		switch {
		case from == "" && to == "":
		case to == "":
			regexRewrite("^"+regexp.QuoteMeta(from)+"/*", "/")
		case from == "" && path.typ == mesh.MatchPrefix:
			ra.PrefixRewrite = to + "/"
		default:
			ra.PrefixRewrite = to
		}
	}
}
