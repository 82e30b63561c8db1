package discovery

import (
	"strings"

	"github.com/sluice-mesh/sluice/mesh"
)

// AnnotationTLSMode sets the mutual TLS mode of a Service, or, on a
// Namespace, of every Service in it (a Service annotation wins):
//
//	sluice.dev/tls-mode  STRICT | PERMISSIVE | DISABLE   default PERMISSIVE
//
// Values are trimmed and compared case-insensitively. An invalid value is
// replaced by the default and reported like the other annotations (a
// Problem with reason InvalidAnnotation, a warning on the mesh.Service).
// docs/mtls.md says what each mode does for each proxy kind.
const AnnotationTLSMode = "sluice.dev/tls-mode"

// parseTLSMode reads the TLS mode of a service from its annotations and its
// namespace's. Without either it returns "", which the model reads as
// mesh.DefaultTLSMode.
func parseTLSMode(service, namespace map[string]string) (mesh.TLSMode, []annotationError) {
	src := &annotationSource{service: service, namespace: namespace}
	v, fromNS, ok := src.get(AnnotationTLSMode)
	if !ok {
		return "", nil
	}
	switch m := mesh.TLSMode(strings.ToUpper(v)); m {
	case mesh.TLSStrict, mesh.TLSPermissive, mesh.TLSDisable:
		return m, nil
	}
	src.fail(fromNS, "invalid %s %q: want STRICT, PERMISSIVE or DISABLE; using %s", AnnotationTLSMode, v, mesh.DefaultTLSMode)
	return mesh.DefaultTLSMode, src.errs
}
