package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// decodeScheme knows every built-in kind and the Gateway API's.
var decodeScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, gatewayv1.Install, gatewayv1beta1.Install} {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("discovery: building the decode scheme: %v", err)) // a programming error
		}
	}
	return s
}()

// strictCodec decodes Kubernetes objects of every built-in kind and of the
// Gateway API, and reports unknown or duplicate fields.
var strictCodec = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, decodeScheme, decodeScheme,
	kjson.SerializerOptions{Strict: true})

// decodedFile is what a file of the file source holds.
type decodedFile struct {
	// objects are the supported objects (Service, EndpointSlice, Pod,
	// Namespace, Node, and gateway.networking.k8s.io/v1 HTTPRoute and
	// GRPCRoute, v1beta1 or v1 ReferenceGrant); other kinds are skipped.
	objects []runtime.Object
	// warnings are fields that were not understood (unknown or duplicate
	// fields); the objects were used anyway.
	warnings []string
	// skipped counts documents of other kinds.
	skipped int
}

// decodeFile decodes every document of a YAML (several documents separated
// by "---") or JSON file, including the items of a List. A document that
// does not decode, or an object without a name, fails the whole file, so
// the file source keeps the file's last good state rather than half of it.
// Namespaced objects without a namespace go to "default", as with kubectl.
func decodeFile(data []byte) (decodedFile, error) {
	var out decodedFile
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return decodedFile{}, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		if err := out.add(raw); err != nil {
			return decodedFile{}, fmt.Errorf("document %d: %w", doc, err)
		}
	}
}

// add decodes one JSON document into out.
func (out *decodedFile) add(raw []byte) error {
	obj, _, err := strictCodec.Decode(raw, nil, nil)
	switch {
	case err != nil && runtime.IsStrictDecodingError(err) && obj != nil:
		out.warnings = append(out.warnings, err.Error())
	case err != nil && runtime.IsNotRegisteredError(err):
		out.skipped++ // a custom resource: not ours
		return nil
	case err != nil:
		return err
	}
	if list, ok := obj.(*corev1.List); ok {
		for i, item := range list.Items {
			if err := out.add(item.Raw); err != nil {
				return fmt.Errorf("list item %d: %w", i, err)
			}
		}
		return nil
	}
	var meta *metav1.ObjectMeta
	switch o := obj.(type) {
	case *corev1.Service:
		meta = &o.ObjectMeta
	case *discoveryv1.EndpointSlice:
		meta = &o.ObjectMeta
	case *corev1.Pod:
		meta = &o.ObjectMeta
	case *corev1.Namespace:
		meta = &o.ObjectMeta
		o.Namespace = ""
	case *corev1.Node:
		meta = &o.ObjectMeta
		o.Namespace = ""
	case *gatewayv1.HTTPRoute:
		meta = &o.ObjectMeta
	case *gatewayv1.GRPCRoute:
		meta = &o.ObjectMeta
	case *gatewayv1beta1.ReferenceGrant:
		meta = &o.ObjectMeta
	case *gatewayv1.ReferenceGrant:
		meta = &o.ObjectMeta
	default:
		out.skipped++
		return nil
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if meta.Name == "" {
		return fmt.Errorf("%s without metadata.name", kind)
	}
	if meta.Namespace == "" && kind != KindNamespace && kind != KindNode {
		meta.Namespace = metav1.NamespaceDefault
	}
	out.objects = append(out.objects, obj)
	return nil
}

// objectRef names an object of the file source.
type objectRef struct {
	kind, namespace, name string
}

func refOf(obj runtime.Object) objectRef {
	m, _ := obj.(metav1.Object) // every decoded object is one
	return objectRef{obj.GetObjectKind().GroupVersionKind().Kind, m.GetNamespace(), m.GetName()}
}
