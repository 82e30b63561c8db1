package discovery

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// conditionSummary maps a parent status's conditions to "Status/Reason".
func conditionSummary(p gatewayv1.RouteParentStatus) map[string]string {
	out := map[string]string{}
	for _, c := range p.Conditions {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func statusOf(t *testing.T, statuses []RouteStatus, kind, ns, name string) RouteStatus {
	t.Helper()
	for _, s := range statuses {
		if s.Kind == kind && s.Namespace == ns && s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s %s/%s", kind, ns, name)
	return RouteStatus{}
}

// TestRouteStatusReasons checks every condition reason Sluice sets, and
// what the route then does to traffic.
func TestRouteStatusReasons(t *testing.T) {
	ok := map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs"}
	to := func() httpRuleFixture { return httpRule().to("api-stable", 9090, 1) }
	gatewayParent := gatewayv1.ParentReference{Name: "public-gw"} // group and kind default to Gateway
	otherNS := serviceParent("api")
	otherNS.Namespace = ptr.To(gatewayv1.Namespace("elsewhere"))
	badRegex := pathMatch(gatewayv1.PathMatchRegularExpression, "/(unclosed")
	redirect := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect,
		RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{StatusCode: ptr.To(301)}}
	kindRef := backendRef("", "bucket", 80, 1)
	kindRef.Group, kindRef.Kind = ptr.To(gatewayv1.Group("storage.example")), ptr.To(gatewayv1.Kind("Bucket"))

	for name, tc := range map[string]struct {
		route    *gatewayv1.HTTPRoute
		want     map[string]string
		attached bool // the route has rules on api:9090
		rules    int
	}{
		"accepted": {
			route: newHTTPRoute("shop", "r").parent("api").rule(to()).obj,
			want:  ok, attached: true, rules: 1,
		},
		"missing parent Service": {
			route: newHTTPRoute("shop", "r").parent("nope").rule(to()).obj,
			want:  map[string]string{"Accepted": "False/NoMatchingParent", "ResolvedRefs": "True/ResolvedRefs"},
		},
		"parent port that does not exist": {
			route: newHTTPRoute("shop", "r").parent("api", 8080).rule(to()).obj,
			want:  map[string]string{"Accepted": "False/NoMatchingParent", "ResolvedRefs": "True/ResolvedRefs"},
		},
		"consumer route": {
			route: newHTTPRoute("shop", "r").parentRef(otherNS).rule(to()).obj,
			want:  map[string]string{"Accepted": "False/UnsupportedValue", "ResolvedRefs": "True/ResolvedRefs"},
		},
		"only rule has an invalid regex": {
			route: newHTTPRoute("shop", "r").parent("api").rule(to().match(badRegex)).obj,
			want:  map[string]string{"Accepted": "False/UnsupportedValue", "ResolvedRefs": "True/ResolvedRefs"},
		},
		"one of two rules has an unsupported filter": {
			route:    newHTTPRoute("shop", "r").parent("api").rule(to()).rule(to().filter(redirect)).obj,
			want:     map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs", "PartiallyInvalid": "True/UnsupportedValue"},
			attached: true, rules: 1,
		},
		"missing backend Service": {
			route:    newHTTPRoute("shop", "r").parent("api").rule(to().to("ghost", 9090, 1)).obj,
			want:     map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "False/BackendNotFound"},
			attached: true, rules: 1,
		},
		"backend port that does not exist": {
			route:    newHTTPRoute("shop", "r").parent("api").rule(httpRule().to("api-stable", 1234, 1)).obj,
			want:     map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "False/BackendNotFound"},
			attached: true, rules: 1,
		},
		"cross-namespace backend without a grant": {
			route:    newHTTPRoute("shop", "r").parent("api").rule(httpRule().toRef(backendRef("other", "api-stable", 9090, 1))).obj,
			want:     map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "False/RefNotPermitted"},
			attached: true, rules: 1,
		},
		"backend of another kind": {
			route:    newHTTPRoute("shop", "r").parent("api").rule(httpRule().toRef(kindRef)).obj,
			want:     map[string]string{"Accepted": "True/Accepted", "ResolvedRefs": "False/InvalidKind"},
			attached: true, rules: 1,
		},
	} {
		t.Run(name, func(t *testing.T) {
			in := inputsOf(t, append(canaryServices("shop"), tc.route)...)
			st := statusOf(t, BuildRouteStatuses(in), KindHTTPRoute, "shop", "r")
			require.Len(t, st.Parents, 1)
			p := st.Parents[0]
			assert.Equal(t, tc.want, conditionSummary(p))
			assert.Equal(t, ControllerName, p.ControllerName)
			assert.Equal(t, tc.route.Spec.ParentRefs[0], p.ParentRef, "the parentRef is copied as written")
			for _, c := range p.Conditions {
				assert.Equal(t, int64(1), c.ObservedGeneration)
				assert.NotEmpty(t, c.Message)
			}
			snap, problems := BuildSnapshot(in)
			pr := snap.Routes[portKey("shop", "api", 9090)]
			if !tc.attached {
				assert.Nil(t, pr, "a route that is not accepted leaves the port's default routing")
			} else {
				require.NotNil(t, pr)
				assert.Len(t, pr.Rules, tc.rules)
			}
			var wantProblems []string
			for _, v := range tc.want {
				if v != "True/Accepted" && v != "True/ResolvedRefs" {
					wantProblems = append(wantProblems, strings.SplitN(v, "/", 2)[1])
				}
			}
			assert.ElementsMatch(t, wantProblems, reasons(problems), "each failed condition is a problem too")
		})
	}

	t.Run("a Gateway parent is another controller's", func(t *testing.T) {
		route := newHTTPRoute("shop", "r").parentRef(gatewayParent).rule(to().to("ghost", 80, 1)).obj
		in := inputsOf(t, append(canaryServices("shop"), route)...)
		st := statusOf(t, BuildRouteStatuses(in), KindHTTPRoute, "shop", "r")
		assert.Empty(t, st.Parents, "no parent status of ours, so stale ones get removed")
		_, problems := BuildSnapshot(in)
		assert.Empty(t, problems, "not a mesh route: no problems reported")
	})

	t.Run("two Service parents get one status each, in order", func(t *testing.T) {
		route := newHTTPRoute("shop", "r").parent("nope").parentRef(gatewayParent).parent("api").rule(to()).obj
		route.Generation = 7
		st := statusOf(t, BuildRouteStatuses(inputsOf(t, append(canaryServices("shop"), route)...)), KindHTTPRoute, "shop", "r")
		require.Len(t, st.Parents, 2)
		assert.Equal(t, "nope", string(st.Parents[0].ParentRef.Name))
		assert.Equal(t, "False/NoMatchingParent", conditionSummary(st.Parents[0])["Accepted"])
		assert.Equal(t, "True/Accepted", conditionSummary(st.Parents[1])["Accepted"])
		assert.Equal(t, int64(7), st.Parents[1].Conditions[0].ObservedGeneration)
		assert.Equal(t, int64(7), st.Generation)
	})
}

// TestRouteKindConflict: an HTTPRoute and a GRPCRoute on one port are not
// merged; the oldest route's kind wins the port, then the first by name.
func TestRouteKindConflict(t *testing.T) {
	svcs := canaryServices("shop")
	for name, tc := range map[string]struct {
		httpAge, grpcAge time.Duration
		winner           string
	}{
		"older HTTPRoute wins":         {0, time.Minute, KindHTTPRoute},
		"older GRPCRoute wins":         {time.Minute, 0, KindGRPCRoute},
		"same age: first by name wins": {0, 0, KindGRPCRoute}, // shop/a before shop/b
	} {
		t.Run(name, func(t *testing.T) {
			hr := newHTTPRoute("shop", "b").parent("api").age(tc.httpAge).rule(httpRule().to("api-stable", 9090, 1)).obj
			gr := newGRPCRoute("shop", "a").parent("api").age(tc.grpcAge).rule(nil, backendRef("", "api-canary", 9090, 1)).obj
			in := inputsOf(t, append(svcs, hr, gr)...)
			statuses := BuildRouteStatuses(in)
			loser, loserName := KindGRPCRoute, "a"
			if tc.winner == KindGRPCRoute {
				loser, loserName = KindHTTPRoute, "b"
			}
			assert.Equal(t, "False/Conflicted", conditionSummary(statusOf(t, statuses, loser, "shop", loserName).Parents[0])["Accepted"])
			snap, _ := BuildSnapshot(in)
			pr := snap.Routes[portKey("shop", "api", 9090)]
			require.Len(t, pr.Rules, 1)
			assert.Equal(t, mesh.RouteKind(tc.winner), pr.Rules[0].Kind)
		})
	}
}

func TestMergeParentStatuses(t *testing.T) {
	t0, t1 := metav1Time(0), metav1Time(time.Hour)
	api, web := serviceParent("api"), serviceParent("web")
	theirs := gatewayv1.RouteParentStatus{ParentRef: gatewayv1.ParentReference{Name: "gw"}, ControllerName: "example.com/gateway",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: t0}}}
	oursOld := gatewayv1.RouteParentStatus{ParentRef: api, ControllerName: ControllerName, Conditions: []metav1.Condition{
		{Type: "Accepted", Status: "True", Reason: "Accepted", Message: "old", ObservedGeneration: 1, LastTransitionTime: t0},
		{Type: "ResolvedRefs", Status: "True", Reason: "ResolvedRefs", ObservedGeneration: 1, LastTransitionTime: t0},
	}}
	stale := gatewayv1.RouteParentStatus{ParentRef: web, ControllerName: ControllerName,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: t0}}}
	want := gatewayv1.RouteParentStatus{ParentRef: api, ControllerName: ControllerName, Conditions: []metav1.Condition{
		{Type: "Accepted", Status: "True", Reason: "Accepted", Message: "new", ObservedGeneration: 2},
		{Type: "ResolvedRefs", Status: "False", Reason: "BackendNotFound", ObservedGeneration: 2},
	}}

	got := mergeParentStatuses([]gatewayv1.RouteParentStatus{theirs, oursOld, stale}, []gatewayv1.RouteParentStatus{want}, t1)
	require.Len(t, got, 2, "the stale entry of ours for web is gone")
	assert.Equal(t, theirs, got[0], "another controller's entry is kept as is")
	assert.Equal(t, "new", got[1].Conditions[0].Message)
	assert.Equal(t, t0, got[1].Conditions[0].LastTransitionTime, "same status: the transition time stays")
	assert.Equal(t, t1, got[1].Conditions[1].LastTransitionTime, "a changed status gets now")
	assert.True(t, parentStatusesEqual(got, mergeParentStatuses(got, []gatewayv1.RouteParentStatus{want}, metav1Time(2*time.Hour))),
		"merging again changes nothing: no write")

	fresh := mergeParentStatuses(nil, []gatewayv1.RouteParentStatus{want}, t1)
	assert.Equal(t, t1, fresh[0].Conditions[0].LastTransitionTime)
	assert.True(t, want.Conditions[0].LastTransitionTime.IsZero())
}

func metav1Time(d time.Duration) metav1.Time { return metav1.NewTime(epoch.Add(d)) }
