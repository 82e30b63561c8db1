package cluster

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Apply server-side-applies objects with the given field manager, forcing
// conflicts and with strict field validation (unknown or duplicate fields
// fail), Namespaces and CustomResourceDefinitions first. It returns the
// objects as the server stored them, in the order applied.
func (c *Cluster) Apply(ctx context.Context, fieldManager string, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))

	ordered := append([]*unstructured.Unstructured(nil), objs...)
	rank := func(o *unstructured.Unstructured) int {
		switch o.GetKind() {
		case "Namespace":
			return 0
		case "CustomResourceDefinition":
			return 1
		default:
			return 2
		}
	}
	sort.SliceStable(ordered, func(i, j int) bool { return rank(ordered[i]) < rank(ordered[j]) })

	var applied []*unstructured.Unstructured
	for _, o := range ordered {
		gvk := o.GroupVersionKind()
		if gvk.Kind == "CustomResourceDefinition" {
			mapper.Reset()
		}
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			mapper.Reset() // a CRD applied just before may be new to discovery
			if m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				return applied, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
			}
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := o.GetNamespace()
			if ns == "" {
				ns = metav1.NamespaceDefault
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		} else {
			o = o.DeepCopy()
			o.SetNamespace("")
		}
		data, err := o.MarshalJSON()
		if err != nil {
			return applied, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		out, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			FieldManager:    fieldManager,
			Force:           new(true),
			FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			return applied, fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
		applied = append(applied, out)
	}
	return applied, nil
}
