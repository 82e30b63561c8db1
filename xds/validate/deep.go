// Package validate checks xDS resources the way a client would before
// accepting them, deeper than go-control-plane's ValidateAll.
//
// ValidateAll checks the protoc-gen-validate rules of a message and of the
// messages it holds directly, but stops at google.protobuf.Any: a Listener
// whose HttpConnectionManager has no stat_prefix passes it. Resource opens
// every Any (resolving its type in protoregistry.GlobalTypes, see
// registry.go), validates what it holds and recurses. Resources does that
// for a whole set and adds the cross-resource rules Envoy enforces at load
// time; GRPCResources adds the rules of grpc-go's xDS client.
package validate

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// allValidator is implemented by every message generated with
// protoc-gen-validate (all Envoy and xDS API messages).
type allValidator interface{ ValidateAll() error }

// Resource validates m with ValidateAll and then every message packed in
// an Any anywhere inside it, recursively. m may itself be an Any.
func Resource(m proto.Message) error {
	if m == nil {
		return errors.New("nil resource")
	}
	var errs []error
	validateRoot(m.ProtoReflect(), "", &errs)
	return errors.Join(errs...)
}

// validateRoot validates a resource or the content of an Any: its own
// rules (which cover the messages it holds directly), then the Anys.
func validateRoot(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		validateAny(a, path, errs)
		return
	}
	if v, ok := m.Interface().(allValidator); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, at(path, err))
		}
	}
	walk(m, path, errs)
}

// walk visits every set message field of m looking for Anys.
func walk(m protoreflect.Message, path string, errs *[]error) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message(), name+"["+strconv.Itoa(i)+"]", errs)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv.Message(), name+"["+strconv.Quote(k.String())+"]", errs)
				return true
			})
		default:
			visit(v.Message(), name, errs)
		}
		return true
	})
}

func visit(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		validateAny(a, path, errs)
		return
	}
	walk(m, path, errs)
}

// validateAny opens an Any and validates its content as a root.
func validateAny(a *anypb.Any, path string, errs *[]error) {
	if a.GetTypeUrl() == "" {
		*errs = append(*errs, at(path, errors.New("an Any without a type_url")))
		return
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		*errs = append(*errs, at(path, fmt.Errorf("cannot open Any of type %q: %w", a.GetTypeUrl(), err)))
		return
	}
	inner := mt.New()
	if err := proto.Unmarshal(a.GetValue(), inner.Interface()); err != nil {
		*errs = append(*errs, at(path, fmt.Errorf("an Any of type %q does not unmarshal: %w", a.GetTypeUrl(), err)))
		return
	}
	validateRoot(inner, path+"<"+string(mt.Descriptor().FullName())+">", errs)
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func at(path string, err error) error {
	if path == "" {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}
