package discovery

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestParseTLSMode(t *testing.T) {
	tests := []struct {
		name               string
		service, namespace map[string]string
		want               mesh.TLSMode
		wantErr            string
		errFromNamespace   bool
	}{
		{name: "no annotation: empty, read as the default", want: ""},
		{name: "service STRICT", service: map[string]string{AnnotationTLSMode: "STRICT"}, want: mesh.TLSStrict},
		{name: "case-insensitive and trimmed", service: map[string]string{AnnotationTLSMode: " disable "}, want: mesh.TLSDisable},
		{name: "namespace default", namespace: map[string]string{AnnotationTLSMode: "strict"}, want: mesh.TLSStrict},
		{
			name:      "service wins over namespace",
			service:   map[string]string{AnnotationTLSMode: "PERMISSIVE"},
			namespace: map[string]string{AnnotationTLSMode: "STRICT"},
			want:      mesh.TLSPermissive,
		},
		{
			name:    "invalid on the service",
			service: map[string]string{AnnotationTLSMode: "mutual"}, want: mesh.TLSPermissive,
			wantErr: `invalid sluice.dev/tls-mode "mutual": want STRICT, PERMISSIVE or DISABLE; using PERMISSIVE`,
		},
		{
			name:      "invalid on the namespace",
			namespace: map[string]string{AnnotationTLSMode: "on"}, want: mesh.TLSPermissive,
			wantErr: `invalid sluice.dev/tls-mode "on"`, errFromNamespace: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := parseTLSMode(tt.service, tt.namespace)
			assert.Equal(t, tt.want, got)
			if tt.wantErr == "" {
				assert.Empty(t, errs)
				return
			}
			require.Len(t, errs, 1)
			assert.Contains(t, errs[0].message, tt.wantErr)
			assert.Equal(t, tt.errFromNamespace, errs[0].fromNamespace)
		})
	}
}

// The mode reaches the model through buildService, and an invalid
// namespace annotation is a Problem on the Namespace and a warning on the
// service.
func TestBuildServiceTLSMode(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 9090}}},
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", UID: "ns-uid", Annotations: map[string]string{AnnotationTLSMode: "STRICT"}}}
	got, problems := buildService(svc, ns)
	require.NotNil(t, got)
	assert.Empty(t, problems)
	assert.Equal(t, mesh.TLSStrict, got.TLSMode)

	svc.Annotations = map[string]string{AnnotationTLSMode: "DISABLE"}
	got, _ = buildService(svc, ns)
	assert.Equal(t, mesh.TLSDisable, got.TLSMode)

	svc.Annotations = nil
	ns.Annotations[AnnotationTLSMode] = "sometimes"
	got, problems = buildService(svc, ns)
	assert.Equal(t, mesh.TLSPermissive, got.TLSMode)
	require.Len(t, problems, 1)
	assert.Equal(t, "Namespace", problems[0].Kind)
	assert.Equal(t, ReasonInvalidAnnotation, problems[0].Reason)
	assert.Equal(t, []string{"namespace annotation: " + problems[0].Message}, got.Warnings)
}
