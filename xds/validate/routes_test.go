package validate

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// withRoute replaces the route of the valid set with the result of change.
func withRoute(s map[string][]types.Resource, change func(r *routev3.Route)) {
	rc := routeConfig("echo", "echo-cluster", "echo:8080")
	change(rc.VirtualHosts[0].Routes[0])
	s[resourcev3.RouteType] = []types.Resource{rc}
}

func weighted(names ...string) *routev3.RouteAction_WeightedClusters {
	wc := &routev3.WeightedCluster{}
	for _, n := range names {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: n, Weight: wrapperspb.UInt32(1)})
	}
	return &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
}

func regexHeader(name, re string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
		MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}},
	}}}
}

func TestRouteRules(t *testing.T) {
	tests := []struct {
		name        string
		change      func(r *routev3.Route)
		envoy, grpc string // "" means valid
	}{{
		name: "split with the missing InvalidBackendCluster",
		change: func(r *routev3.Route) {
			r.GetRoute().ClusterSpecifier = weighted("echo-cluster", InvalidBackendCluster)
		},
		grpc: `cluster "InvalidBackendCluster" does not exist (grpc-go would wait for it)`,
	}, {
		name: "InvalidBackendCluster alone is no exemption",
		change: func(r *routev3.Route) {
			r.GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: InvalidBackendCluster}
		},
		envoy: `cluster "InvalidBackendCluster" does not exist`,
		grpc:  `cluster "InvalidBackendCluster" does not exist`,
	}, {
		name: "zero total weight",
		change: func(r *routev3.Route) {
			w := weighted("echo-cluster")
			w.WeightedClusters.Clusters[0].Weight = wrapperspb.UInt32(0)
			r.GetRoute().ClusterSpecifier = w
		},
		envoy: "total weight 0",
		grpc:  "total weight 0",
	}, {
		name: "mirror to a missing cluster",
		change: func(r *routev3.Route) {
			r.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
		},
		envoy: `request mirror: cluster "shadow" does not exist`,
		grpc:  `request mirror: cluster "shadow" does not exist`,
	}, {
		name:   "header regex that does not compile",
		change: func(r *routev3.Route) { r.Match.Headers = []*routev3.HeaderMatcher{regexHeader("x", "(")} },
		envoy:  `header "x": regex "(" does not compile`,
		grpc:   `header "x": regex "(" does not compile`,
	}, {
		name: "path regex that does not compile",
		change: func(r *routev3.Route) {
			r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/a["}}
		},
		envoy: `path: regex "/a[" does not compile`,
		grpc:  `path: regex "/a[" does not compile`,
	}, {
		name: "query parameters",
		change: func(r *routev3.Route) {
			r.Match.QueryParameters = []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}
		},
		grpc: "query_parameters match (grpc-go ignores the route)",
	}, {
		name: "path_separated_prefix",
		change: func(r *routev3.Route) {
			r.Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/a"}
		},
		grpc: "grpc-go needs a prefix, path or safe_regex match",
	}, {
		name: "set a pseudo-header",
		change: func(r *routev3.Route) {
			r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: ":path", Value: "/"}}}
		},
		envoy: `request header ":path" may not be modified`,
		grpc:  `request header ":path" may not be modified`,
	}, {
		name:   "remove the request's host",
		change: func(r *routev3.Route) { r.RequestHeadersToRemove = []string{"Host"} },
		envoy:  `request header "Host" may not be modified`,
		grpc:   `request header "Host" may not be modified`,
	}, {
		name: "response host is fine",
		change: func(r *routev3.Route) {
			r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "host", Value: "x"}}}
		},
	}, {
		name: "two path rewrites",
		change: func(r *routev3.Route) {
			r.GetRoute().PrefixRewrite = "/a"
			r.GetRoute().RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/"}, Substitution: "/"}
		},
		envoy: "both prefix_rewrite and regex_rewrite",
		grpc:  "both prefix_rewrite and regex_rewrite",
	}, {
		name: "direct_response: grpc-go answers UNAVAILABLE",
		change: func(r *routev3.Route) {
			r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 503}}
		},
	}, {
		name: "redirect",
		change: func(r *routev3.Route) {
			r.Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/x"}}}
		},
		grpc: "neither a route action nor a direct_response",
	}, {
		name: "grpc-go refuses num_retries 0",
		change: func(r *routev3.Route) {
			r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}
		},
		grpc: "num_retries 0 must be >= 1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				name  string
				check func(map[string][]types.Resource) error
				want  string
			}{{"Resources", Resources, tt.envoy}, {"GRPCResources", GRPCResources, tt.grpc}} {
				s := grpcSet(t)
				withRoute(s, tt.change)
				err := c.check(s)
				if c.want == "" {
					if err != nil {
						t.Errorf("%s: %v", c.name, err)
					}
					continue
				}
				requireErr(t, err, c.want)
			}
		})
	}
}
