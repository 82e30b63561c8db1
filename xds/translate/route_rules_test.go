package translate

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

func newTestTranslator(kind mesh.ProxyKind, svcs ...serviceFixture) *translator {
	t := newTranslator(snapshot(svcs...).Snapshot, &mesh.Proxy{ID: "p", Kind: kind}, Options{})
	t.servicePorts()
	return t
}

func TestPathMatch(t *testing.T) {
	regex := func(re string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
	}
	prefix := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
	}
	tests := []struct {
		name        string
		match       *mesh.StringMatch
		envoy, grpc *routev3.RouteMatch // nil: left out
	}{
		{"no path", nil, prefix("/"), prefix("/")},
		{"root prefix", &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/"}, prefix("/"), prefix("/")},
		{"segment prefix", &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/foo"},
			&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/foo"}}, regex(`/foo(/.*)?`)},
		{"trailing slash ignored", &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/pkg.Svc/"},
			&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/pkg.Svc"}}, prefix("/pkg.Svc/")},
		{"regex metacharacters quoted", &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/a.b+c"},
			&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/a.b+c"}}, regex(`/a\.b\+c(/.*)?`)},
		{"exact", &mesh.StringMatch{Type: mesh.MatchExact, Value: "/pkg.Svc/Get"},
			&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/pkg.Svc/Get"}}, &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/pkg.Svc/Get"}}},
		{"regex", &mesh.StringMatch{Type: mesh.MatchRegex, Value: "/v[0-9]+/.*"}, regex("/v[0-9]+/.*"), regex("/v[0-9]+/.*")},
		{"invalid regex", &mesh.StringMatch{Type: mesh.MatchRegex, Value: "/v[0-9"}, nil, nil},
		{"empty regex", &mesh.StringMatch{Type: mesh.MatchRegex}, nil, nil},
		{"relative exact", &mesh.StringMatch{Type: mesh.MatchExact, Value: "foo"}, nil, nil},
		{"prefix with query", &mesh.StringMatch{Type: mesh.MatchPrefix, Value: "/foo?x=1"}, nil, nil},
		{"unknown type", &mesh.StringMatch{Type: "Suffix", Value: "/x"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for kind, want := range map[mesh.ProxyKind]*routev3.RouteMatch{mesh.ProxyEnvoy: tt.envoy, mesh.ProxyGRPC: tt.grpc} {
				tr := newTestTranslator(kind)
				got, _, ok := tr.pathMatch("r", tt.match)
				if want == nil {
					if ok || len(tr.warnings) == 0 {
						t.Errorf("%s: got %v, ok %v, warnings %q; want left out with a warning", kind, got, ok, tr.warnings)
					}
					continue
				}
				if !ok {
					t.Fatalf("%s: left out: %q", kind, tr.warnings)
				}
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Errorf("%s (-want +got):\n%s", kind, diff)
				}
			}
		})
	}
}

func TestRouteMatchLeftOutForGRPC(t *testing.T) {
	tests := []struct {
		name  string
		match mesh.RouteMatch
		grpc  bool // kept for gRPC
		envoy bool // kept for Envoy
	}{
		{"POST", mesh.RouteMatch{Method: "POST"}, true, true},
		{"GET", mesh.RouteMatch{Method: "GET"}, false, true},
		{"lower-case method", mesh.RouteMatch{Method: "get"}, false, false},
		{"query parameter", mesh.RouteMatch{QueryParams: []mesh.HeaderMatch{{Name: "q", Value: "1"}}}, false, true},
		{"pseudo-header", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: ":authority", Value: "x"}}}, false, true},
		{"binary header", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "x-id-bin", Value: "x"}}}, false, true},
		{"bad header name", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "x y", Value: "x"}}}, false, false},
		{"header prefix type", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "x", Type: mesh.MatchPrefix, Value: "x"}}}, false, false},
		{"invalid header regex", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "x", Type: mesh.MatchRegex, Value: "("}}}, false, false},
		{"header value with newline", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "x", Value: "a\nb"}}}, false, false},
		{"header regex", mesh.RouteMatch{Headers: []mesh.HeaderMatch{{Name: "X-Tenant", Type: mesh.MatchRegex, Value: "a|b"}}}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for kind, want := range map[mesh.ProxyKind]bool{mesh.ProxyGRPC: tt.grpc, mesh.ProxyEnvoy: tt.envoy} {
				tr := newTestTranslator(kind)
				m, _, ok := tr.routeMatch("r", &tt.match)
				if ok != want {
					t.Errorf("%s: kept %v, want %v (warnings %q)", kind, ok, want, tr.warnings)
				}
				if !ok && len(tr.warnings) == 0 {
					t.Errorf("%s: left out without a warning", kind)
				}
				if ok && kind == mesh.ProxyGRPC && tt.match.Method != "" && len(m.GetHeaders()) != 0 {
					t.Errorf("gRPC: method POST must be dropped, got headers %v", m.GetHeaders())
				}
			}
		})
	}
}

func TestPathRewrite(t *testing.T) {
	regex := func(pattern, sub string) *routev3.RouteAction {
		return &routev3.RouteAction{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: pattern}, Substitution: sub}}
	}
	prefix := func(p string) *routev3.RouteAction { return &routev3.RouteAction{PrefixRewrite: p} }
	tests := []struct {
		name    string
		rewrite mesh.URLRewrite
		path    pathSpec
		want    *routev3.RouteAction
	}{
		{"prefix to prefix", mesh.URLRewrite{PrefixPath: "/api/v2/"}, pathSpec{typ: mesh.MatchPrefix, value: "/v2"}, prefix("/api/v2")},
		{"prefix stripped", mesh.URLRewrite{PrefixPath: "/"}, pathSpec{typ: mesh.MatchPrefix, value: "/old"}, regex(`^/old/*`, "/")},
		{"root prefix to prefix", mesh.URLRewrite{PrefixPath: "/base"}, pathSpec{typ: mesh.MatchPrefix}, prefix("/base/")},
		{"root to root", mesh.URLRewrite{PrefixPath: "/"}, pathSpec{typ: mesh.MatchPrefix}, &routev3.RouteAction{}},
		{"exact path replaced", mesh.URLRewrite{PrefixPath: "/new"}, pathSpec{typ: mesh.MatchExact, value: "/old"}, prefix("/new")},
		{"regex match: not rewritten", mesh.URLRewrite{PrefixPath: "/new"}, pathSpec{typ: mesh.MatchRegex, value: "/o.*"}, &routev3.RouteAction{}},
		{"full path", mesh.URLRewrite{FullPath: `/a\b`}, pathSpec{typ: mesh.MatchPrefix, value: "/x"}, regex(`^/.*$`, `/a\\b`)},
		{"full path wins over prefix", mesh.URLRewrite{FullPath: "/f", PrefixPath: "/p"}, pathSpec{typ: mesh.MatchPrefix}, regex(`^/.*$`, "/f")},
		{"relative path refused", mesh.URLRewrite{FullPath: "f"}, pathSpec{typ: mesh.MatchPrefix}, &routev3.RouteAction{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTranslator(mesh.ProxyEnvoy)
			got := &routev3.RouteAction{}
			tr.pathRewrite("r", &tt.rewrite, tt.path, got)
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	grpcSvc := service("default", "rpc").withPort(9000, mesh.ProtocolGRPC)
	httpSvc := service("default", "web").withPort(80, mesh.ProtocolHTTP)
	tests := []struct {
		name     string
		kind     mesh.ProxyKind
		svc      serviceFixture
		rule     mesh.RouteRule
		perTry   time.Duration
		retryOn  string
		codes    []uint32
		retries  uint32
		warnings int
	}{{
		name: "gRPC maps HTTP codes, 501 has no equivalent", kind: mesh.ProxyGRPC, svc: grpcSvc,
		rule:    mesh.RouteRule{Retry: &mesh.RetryPolicy{Attempts: 3, Codes: []int{504, 500, 501, 429, 499, 502}}},
		retryOn: "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable", retries: 3, warnings: 1,
	}, {
		name: "gRPC without codes retries unavailable", kind: mesh.ProxyGRPC, svc: grpcSvc,
		rule:    mesh.RouteRule{Retry: &mesh.RetryPolicy{}},
		retryOn: "unavailable", retries: 1,
	}, {
		name: "Envoy HTTP", kind: mesh.ProxyEnvoy, svc: httpSvc,
		rule:    mesh.RouteRule{Kind: mesh.RouteHTTP, Retry: &mesh.RetryPolicy{Attempts: 2, Codes: []int{503, 500, 503, 200}}},
		perTry:  time.Second,
		retryOn: "connect-failure,refused-stream,reset,retriable-status-codes", codes: []uint32{500, 503}, retries: 2, warnings: 1,
	}, {
		name: "Envoy GRPCRoute adds gRPC conditions", kind: mesh.ProxyEnvoy, svc: httpSvc,
		rule:    mesh.RouteRule{Kind: mesh.RouteGRPC, Retry: &mesh.RetryPolicy{Codes: []int{500}}},
		retryOn: "connect-failure,refused-stream,reset,retriable-status-codes,internal,unavailable", codes: []uint32{500}, retries: 1,
	}, {
		name: "Envoy grpc port adds gRPC conditions", kind: mesh.ProxyEnvoy, svc: grpcSvc,
		rule:    mesh.RouteRule{Kind: mesh.RouteHTTP, Retry: &mesh.RetryPolicy{}},
		retryOn: "connect-failure,refused-stream,reset,unavailable", retries: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTranslator(tt.kind, tt.svc)
			sp := tr.servicePorts()[0]
			rp := tr.retryPolicy("r", sp, &tt.rule, tt.perTry)
			if rp.GetRetryOn() != tt.retryOn {
				t.Errorf("retry_on %q, want %q", rp.GetRetryOn(), tt.retryOn)
			}
			if diff := cmp.Diff(tt.codes, rp.GetRetriableStatusCodes()); diff != "" {
				t.Errorf("retriable codes (-want +got):\n%s", diff)
			}
			if rp.GetNumRetries().GetValue() != tt.retries {
				t.Errorf("num_retries %d, want %d", rp.GetNumRetries().GetValue(), tt.retries)
			}
			if got := rp.GetPerTryTimeout().AsDuration(); got != tt.perTry {
				t.Errorf("per_try_timeout %s, want %s", got, tt.perTry)
			}
			if len(tr.warnings) != tt.warnings {
				t.Errorf("warnings %q, want %d", tr.warnings, tt.warnings)
			}
		})
	}
	t.Run("no retry", func(t *testing.T) {
		tr := newTestTranslator(mesh.ProxyEnvoy, httpSvc)
		if rp := tr.retryPolicy("r", tr.servicePorts()[0], &mesh.RouteRule{}, 0); rp != nil {
			t.Errorf("got %v, want nil", rp)
		}
	})
	t.Run("backoff", func(t *testing.T) {
		tr := newTestTranslator(mesh.ProxyGRPC, grpcSvc)
		rp := tr.retryPolicy("r", tr.servicePorts()[0], &mesh.RouteRule{Retry: &mesh.RetryPolicy{Backoff: 100 * time.Microsecond}}, 0)
		if got := rp.GetRetryBackOff().GetBaseInterval().AsDuration(); got != time.Millisecond {
			t.Errorf("base_interval %s, want 1ms (the floor)", got)
		}
	})
}

func TestRuleTimeouts(t *testing.T) {
	retry := &mesh.RetryPolicy{}
	tests := []struct {
		name                string
		rule                mesh.RouteRule
		envoyTimeout        time.Duration
		perTry              time.Duration
		grpcMaxStreamDur    time.Duration // 0: unset
		grpcWarnsPerAttempt bool
	}{
		{"none", mesh.RouteRule{}, 0, 0, 0, false},
		{"request only", mesh.RouteRule{Timeout: 10 * time.Second}, 10 * time.Second, 0, 10 * time.Second, false},
		{"backend only, no retry", mesh.RouteRule{BackendTimeout: 2 * time.Second}, 2 * time.Second, 0, 2 * time.Second, false},
		{"both, no retry: the shorter", mesh.RouteRule{Timeout: 10 * time.Second, BackendTimeout: 2 * time.Second}, 2 * time.Second, 0, 2 * time.Second, false},
		{"both with retry", mesh.RouteRule{Timeout: 10 * time.Second, BackendTimeout: 2 * time.Second, Retry: retry}, 10 * time.Second, 2 * time.Second, 10 * time.Second, true},
		{"negative", mesh.RouteRule{Timeout: -time.Second}, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTranslator(mesh.ProxyEnvoy)
			total, perTry := tr.ruleTimeouts("r", &tt.rule)
			ra := &routev3.RouteAction{}
			tr.setTimeout("r", &tt.rule, total, perTry, ra)
			if diff := cmp.Diff(durationpb.New(tt.envoyTimeout), ra.GetTimeout(), protocmp.Transform()); diff != "" {
				t.Errorf("Envoy timeout (-want +got):\n%s", diff)
			}
			if perTry != tt.perTry {
				t.Errorf("per try %s, want %s", perTry, tt.perTry)
			}

			g := newTestTranslator(mesh.ProxyGRPC)
			total, perTry = g.ruleTimeouts("r", &tt.rule)
			ra = &routev3.RouteAction{}
			g.setTimeout("r", &tt.rule, total, perTry, ra)
			if ra.GetTimeout() != nil {
				t.Errorf("gRPC route has a timeout %v; grpc-go ignores it", ra.GetTimeout())
			}
			if got := ra.GetMaxStreamDuration().GetMaxStreamDuration(); (got == nil) != (tt.grpcMaxStreamDur == 0) || got.AsDuration() != tt.grpcMaxStreamDur {
				t.Errorf("gRPC max_stream_duration %v, want %s", got, tt.grpcMaxStreamDur)
			}
			warned := strings.Contains(strings.Join(g.warnings, "\n"), "per-attempt")
			if warned != tt.grpcWarnsPerAttempt {
				t.Errorf("gRPC per-attempt warning %v, want %v: %q", warned, tt.grpcWarnsPerAttempt, g.warnings)
			}
		})
	}
}

func TestRuleBackends(t *testing.T) {
	a := service("default", "a").withPort(80, mesh.ProtocolHTTP)
	b := service("default", "b").withPort(80, mesh.ProtocolHTTP)
	ref := func(name string, w uint32) mesh.WeightedBackend {
		return mesh.WeightedBackend{Port: mesh.PortKey{Namespace: "default", Name: name, Port: 80}, Weight: w}
	}
	wc := func(ws ...any) *routev3.RouteAction {
		out := &routev3.WeightedCluster{}
		for i := 0; i < len(ws); i += 2 {
			out.Clusters = append(out.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: ws[i].(string), Weight: wrapperspb.UInt32(ws[i+1].(uint32))})
		}
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: out}}
	}
	ca, cb := "outbound|80||a.default.svc.cluster.local", "outbound|80||b.default.svc.cluster.local"
	tests := []struct {
		name     string
		backends []mesh.WeightedBackend
		want     *routev3.RouteAction // nil: direct_response
	}{
		{"one backend", []mesh.WeightedBackend{ref("a", 5)}, &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ca}}},
		{"zero weight dropped", []mesh.WeightedBackend{ref("a", 100), ref("b", 0)}, &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ca}}},
		{"split in order", []mesh.WeightedBackend{ref("b", 90), ref("a", 10)}, wc(cb, uint32(90), ca, uint32(10))},
		{"same port merged", []mesh.WeightedBackend{ref("a", 1), ref("b", 1), ref("a", 2)}, wc(ca, uint32(3), cb, uint32(1))},
		{"invalid share", []mesh.WeightedBackend{ref("a", 3), {Weight: 1, Invalid: true}, ref("ghost", 2)}, wc(ca, uint32(3), InvalidBackendCluster, uint32(3))},
		{"over 2^32 scaled", []mesh.WeightedBackend{ref("a", 1<<32-1), ref("b", 1<<31), {Weight: 1, Invalid: true}}, wc(ca, uint32(1<<31-1), cb, uint32(1<<30), InvalidBackendCluster, uint32(1))},
		{"all zero", []mesh.WeightedBackend{ref("a", 0), ref("b", 0)}, nil},
		{"all invalid", []mesh.WeightedBackend{{Weight: 1, Invalid: true}}, nil},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTranslator(mesh.ProxyGRPC, a, b)
			sp := tr.servicePorts()[0]
			route := tr.ruleTemplate("r", sp, &mesh.RouteRule{Kind: mesh.RouteHTTP, Backends: tt.backends})
			if tt.want == nil {
				if route.GetDirectResponse().GetStatus() != 500 {
					t.Errorf("got %v, want direct_response 500", route)
				}
				return
			}
			got := &routev3.RouteAction{ClusterSpecifier: route.GetRoute().GetClusterSpecifier()}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSlowStart(t *testing.T) {
	tests := []struct {
		name   string
		kind   mesh.ProxyKind
		lb     mesh.LoadBalancing
		window time.Duration // 0: none
		warns  bool
	}{
		{"round robin", mesh.ProxyEnvoy, mesh.LoadBalancing{SlowStart: 30 * time.Second}, 30 * time.Second, false},
		{"least request", mesh.ProxyEnvoy, mesh.LoadBalancing{Policy: mesh.LBLeastRequest, SlowStart: time.Minute}, time.Minute, false},
		{"ring hash", mesh.ProxyEnvoy, mesh.LoadBalancing{Policy: mesh.LBRingHash, Hash: &mesh.HashPolicy{Header: "x"}, SlowStart: time.Second}, 0, true},
		{"random", mesh.ProxyEnvoy, mesh.LoadBalancing{Policy: mesh.LBRandom, SlowStart: time.Second}, 0, true},
		{"negative", mesh.ProxyEnvoy, mesh.LoadBalancing{SlowStart: -time.Second}, 0, true},
		{"below 1ms", mesh.ProxyEnvoy, mesh.LoadBalancing{SlowStart: time.Microsecond}, time.Millisecond, true},
		{"gRPC", mesh.ProxyGRPC, mesh.LoadBalancing{SlowStart: time.Second}, 0, true},
		{"off", mesh.ProxyEnvoy, mesh.LoadBalancing{}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTranslator(tt.kind, service("default", "s").withPort(80, mesh.ProtocolHTTP).withLB(tt.lb))
			var c *clusterv3.Cluster
			if tt.kind == mesh.ProxyEnvoy {
				c = tr.envoyClusters(tr.servicePorts())[0].(*clusterv3.Cluster)
			} else {
				c = tr.grpcClusters(tr.servicePorts())[0].(*clusterv3.Cluster)
			}
			ss := c.GetRoundRobinLbConfig().GetSlowStartConfig()
			if ss == nil {
				ss = c.GetLeastRequestLbConfig().GetSlowStartConfig()
			}
			if got := ss.GetSlowStartWindow().AsDuration(); got != tt.window {
				t.Errorf("slow start window %s, want %s", got, tt.window)
			}
			if (len(tr.warnings) > 0) != tt.warns {
				t.Errorf("warnings %q, want some: %v", tr.warnings, tt.warns)
			}
		})
	}
}
