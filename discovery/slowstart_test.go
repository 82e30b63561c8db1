package discovery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

func TestSlowStartAnnotation(t *testing.T) {
	for _, tc := range []struct {
		service, namespace string
		want               time.Duration
		err                string
	}{
		{want: 0},
		{service: "30s", want: 30 * time.Second},
		{service: " 1m30s ", want: 90 * time.Second},
		{service: "off", want: 0},
		{service: "0s", want: 0},
		{namespace: "10s", want: 10 * time.Second},
		{service: "5s", namespace: "10s", want: 5 * time.Second},
		{service: "soon", err: `invalid sluice.dev/slow-start "soon"`},
		{service: "-1s", err: "slow start off"},
	} {
		svc, ns := map[string]string{}, map[string]string{}
		if tc.service != "" {
			svc[AnnotationSlowStart] = tc.service
		}
		if tc.namespace != "" {
			ns[AnnotationSlowStart] = tc.namespace
		}
		lb, errs := parseLoadBalancing(svc, ns)
		assert.Equal(t, tc.want, lb.SlowStart, "%+v", tc)
		if tc.err == "" {
			assert.Empty(t, errs, "%+v", tc)
			continue
		}
		if assert.Len(t, errs, 1) {
			assert.Contains(t, errs[0].message, tc.err)
		}
	}

	// Through the build: the Service is served without slow start, with a
	// problem and a warning.
	snap, problems := BuildSnapshot(Inputs{Services: []*corev1.Service{
		newService("shop", "api").port("http", 80).annotate(AnnotationSlowStart, "later").obj,
		newService("shop", "web").port("http", 80).annotate(AnnotationSlowStart, "45s").obj,
	}})
	assert.Equal(t, []string{ReasonInvalidAnnotation}, reasons(problems))
	assert.Zero(t, snap.Services[0].LB.SlowStart)
	assert.Len(t, snap.Services[0].Warnings, 1)
	assert.Equal(t, 45*time.Second, snap.Services[1].LB.SlowStart)
}
