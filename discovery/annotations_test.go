package discovery

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestParseLoadBalancing(t *testing.T) {
	defaults := mesh.LoadBalancing{Policy: mesh.LBRoundRobin, LocalityAware: true}
	with := func(f func(*mesh.LoadBalancing)) mesh.LoadBalancing {
		lb := defaults
		f(&lb)
		return lb
	}
	tests := []struct {
		name      string
		service   map[string]string
		namespace map[string]string
		want      mesh.LoadBalancing
		// errs are substrings of the expected errors, in order.
		errs []string
		// fromNamespace, per error.
		fromNamespace []bool
	}{
		{name: "no annotations", want: defaults},
		{
			name:    "least request",
			service: map[string]string{AnnotationLBPolicy: "least_request"},
			want:    with(func(lb *mesh.LoadBalancing) { lb.Policy = mesh.LBLeastRequest }),
		},
		{
			name:    "random, case-insensitive, trimmed",
			service: map[string]string{AnnotationLBPolicy: " RANDOM "},
			want:    with(func(lb *mesh.LoadBalancing) { lb.Policy = mesh.LBRandom }),
		},
		{
			name:    "ring hash on a header, lowercased",
			service: map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashOn: "header:X-User"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Policy, lb.Hash = mesh.LBRingHash, &mesh.HashPolicy{Header: "x-user"}
			}),
		},
		{
			name:    "ring hash on a cookie",
			service: map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashOn: "cookie:session"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Policy, lb.Hash = mesh.LBRingHash, &mesh.HashPolicy{Cookie: "session"}
			}),
		},
		{
			name:    "ring hash on the source IP",
			service: map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashOn: "source-ip"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Policy, lb.Hash = mesh.LBRingHash, &mesh.HashPolicy{SourceIP: true}
			}),
		},
		{
			name:    "ring hash on :authority",
			service: map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashOn: "header::authority"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Policy, lb.Hash = mesh.LBRingHash, &mesh.HashPolicy{Header: ":authority"}
			}),
		},
		{
			name:    "invalid policy",
			service: map[string]string{AnnotationLBPolicy: "fastest"},
			want:    defaults,
			errs:    []string{`invalid sluice.dev/lb-policy "fastest"`},
		},
		{
			name:    "ring hash without hash-on falls back to round robin",
			service: map[string]string{AnnotationLBPolicy: "ring_hash"},
			want:    defaults,
			errs:    []string{"ring_hash needs a valid sluice.dev/hash-on"},
		},
		{
			name:    "ring hash with an invalid hash-on",
			service: map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashOn: "header:bad header"},
			want:    defaults,
			errs:    []string{`invalid sluice.dev/hash-on "header:bad header"`, "ring_hash needs a valid"},
		},
		{
			name:    "hash-on without ring hash is ignored",
			service: map[string]string{AnnotationHashOn: "source-ip"},
			want:    defaults,
			errs:    []string{"only used with sluice.dev/lb-policy ring_hash, not round_robin"},
		},
		{
			name:    "hash-on kinds",
			service: map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashOn: "query:x"},
			want:    defaults,
			errs:    []string{`invalid sluice.dev/hash-on "query:x"`, "ring_hash needs a valid"},
		},
		{
			name:    "locality off",
			service: map[string]string{AnnotationLocalityAware: "false"},
			want:    with(func(lb *mesh.LoadBalancing) { lb.LocalityAware = false }),
		},
		{
			name:    "invalid locality",
			service: map[string]string{AnnotationLocalityAware: "sometimes"},
			want:    defaults,
			errs:    []string{`invalid sluice.dev/locality-aware "sometimes"`},
		},
		{
			name:    "connect timeout",
			service: map[string]string{AnnotationConnectTimeout: "250ms"},
			want:    with(func(lb *mesh.LoadBalancing) { lb.ConnectTimeout = 250 * time.Millisecond }),
		},
		{
			name:    "invalid connect timeout",
			service: map[string]string{AnnotationConnectTimeout: "soon"},
			want:    defaults,
			errs:    []string{`invalid sluice.dev/connect-timeout "soon"`},
		},
		{
			name:    "negative connect timeout",
			service: map[string]string{AnnotationConnectTimeout: "-1s"},
			want:    defaults,
			errs:    []string{`invalid sluice.dev/connect-timeout "-1s"`},
		},
		{
			name:    "outlier detection on",
			service: map[string]string{AnnotationOutlierDetection: "on"},
			want: with(func(lb *mesh.LoadBalancing) {
				od := DefaultOutlierDetection
				lb.Outlier = &od
			}),
		},
		{
			name:    "outlier detection off",
			service: map[string]string{AnnotationOutlierDetection: "false"},
			want:    defaults,
		},
		{
			name:    "outlier detection fields, the rest defaulted",
			service: map[string]string{AnnotationOutlierDetection: "consecutive5xx=3, interval=5s,baseEjection=1m"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Outlier = &mesh.OutlierDetection{Consecutive5xx: 3, Interval: 5 * time.Second,
					BaseEjectionTime: time.Minute, MaxEjectionPercent: 10}
			}),
		},
		{
			name:    "outlier detection, every field",
			service: map[string]string{AnnotationOutlierDetection: "consecutive5xx=5,interval=10s,baseEjectionTime=30s,maxEjectionPercent=50"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Outlier = &mesh.OutlierDetection{Consecutive5xx: 5, Interval: 10 * time.Second,
					BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 50}
			}),
		},
		{
			name:    "outlier detection, percent out of range",
			service: map[string]string{AnnotationOutlierDetection: "maxEjectionPercent=150"},
			want:    defaults,
			errs:    []string{"maxejectionpercent: 150 is outside 0-100; outlier detection off"},
		},
		{
			name:    "outlier detection, unknown key",
			service: map[string]string{AnnotationOutlierDetection: "consecutiveErrors=3"},
			want:    defaults,
			errs:    []string{`unknown key "consecutiveerrors"`},
		},
		{
			name:    "outlier detection, not key=value",
			service: map[string]string{AnnotationOutlierDetection: "yes please"},
			want:    defaults,
			errs:    []string{`"yes please" is not key=value`},
		},
		{
			name:      "namespace default",
			namespace: map[string]string{AnnotationLBPolicy: "least_request", AnnotationConnectTimeout: "3s"},
			want: with(func(lb *mesh.LoadBalancing) {
				lb.Policy, lb.ConnectTimeout = mesh.LBLeastRequest, 3*time.Second
			}),
		},
		{
			name:      "service overrides namespace",
			service:   map[string]string{AnnotationLBPolicy: "random"},
			namespace: map[string]string{AnnotationLBPolicy: "least_request"},
			want:      with(func(lb *mesh.LoadBalancing) { lb.Policy = mesh.LBRandom }),
		},
		{
			name:          "invalid namespace default is the namespace's problem",
			namespace:     map[string]string{AnnotationConnectTimeout: "never"},
			want:          defaults,
			errs:          []string{`invalid sluice.dev/connect-timeout "never"`},
			fromNamespace: []bool{true},
		},
		{
			name:    "several invalid values are all reported",
			service: map[string]string{AnnotationLBPolicy: "x", AnnotationLocalityAware: "y", AnnotationConnectTimeout: "z"},
			want:    defaults,
			errs:    []string{"lb-policy", "locality-aware", "connect-timeout"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := parseLoadBalancing(tt.service, tt.namespace)
			assert.Equal(t, tt.want, got)
			if assert.Len(t, errs, len(tt.errs), "errors: %v", errs) {
				for i, want := range tt.errs {
					assert.True(t, strings.Contains(errs[i].message, want), "error %d = %q, want it to contain %q", i, errs[i].message, want)
					fromNS := i < len(tt.fromNamespace) && tt.fromNamespace[i]
					assert.Equal(t, fromNS, errs[i].fromNamespace, "error %d fromNamespace", i)
				}
			}
		})
	}
}
