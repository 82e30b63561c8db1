package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomization is the subset of kustomize's Kustomization that
// LoadKustomization implements.
type kustomization struct {
	APIVersion        string            `json:"apiVersion"`
	Kind              string            `json:"kind"`
	Resources         []string          `json:"resources"`
	Namespace         string            `json:"namespace"`
	Labels            []kustomizeLabels `json:"labels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
}

type kustomizeLabels struct {
	Pairs            map[string]string `json:"pairs"`
	IncludeSelectors bool              `json:"includeSelectors"`
	IncludeTemplates bool              `json:"includeTemplates"`
}

// supportedKustomizeFields are the top-level keys LoadKustomization
// understands; any other key fails loudly rather than being ignored.
var supportedKustomizeFields = []string{"apiVersion", "kind", "resources", "namespace", "labels", "commonAnnotations"}

// LoadKustomization reads dir/kustomization.yaml and returns the objects of
// its resources (YAML files, or directories with their own kustomization),
// with its namespace, labels (without includeSelectors) and
// commonAnnotations applied. It is not kustomize: any feature it does not
// implement (patches, generators, images, remote bases, …) is an error
// naming it. The namespace is set on every object except Namespaces and the
// cluster-scoped kinds in clusterScopedKinds; the caller's RESTMapper knows
// better, so Apply also drops the namespace of cluster-scoped objects.
func LoadKustomization(dir string) ([]*unstructured.Unstructured, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kustomization: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var unsupported []string
	for k := range raw {
		if !contains(supportedKustomizeFields, k) {
			unsupported = append(unsupported, k)
		}
	}
	if len(unsupported) > 0 {
		sort.Strings(unsupported)
		return nil, fmt.Errorf("%s uses %s, which the test applier (test/cluster/kustomize.go) does not implement; it supports %s",
			path, strings.Join(unsupported, ", "), strings.Join(supportedKustomizeFields, ", "))
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if k.Kind != "" && k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: kind %q, want Kustomization", path, k.Kind)
	}

	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		if strings.Contains(r, "://") || strings.HasPrefix(r, "github.com/") {
			return nil, fmt.Errorf("%s: remote resource %q is not supported", path, r)
		}
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %q: %w", path, r, err)
		}
		var more []*unstructured.Unstructured
		if st.IsDir() {
			more, err = LoadKustomization(p)
		} else {
			more, err = loadYAMLFile(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}

	for _, o := range objs {
		if k.Namespace != "" && !clusterScopedKinds[o.GetKind()] {
			o.SetNamespace(k.Namespace)
		}
		for _, l := range k.Labels {
			if l.IncludeSelectors {
				return nil, fmt.Errorf("%s: labels with includeSelectors are not supported", path)
			}
			o.SetLabels(merge(o.GetLabels(), l.Pairs))
			if l.IncludeTemplates {
				if err := mergeTemplateLabels(o, l.Pairs); err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
			}
		}
		if len(k.CommonAnnotations) > 0 {
			o.SetAnnotations(merge(o.GetAnnotations(), k.CommonAnnotations))
		}
	}
	return objs, nil
}

// clusterScopedKinds are kinds LoadKustomization never puts in a namespace.
var clusterScopedKinds = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true,
	"PriorityClass": true, "StorageClass": true, "ValidatingWebhookConfiguration": true,
	"MutatingWebhookConfiguration": true, "APIService": true, "GatewayClass": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
}

// loadYAMLFile decodes every document of a YAML file.
func loadYAMLFile(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		if len(m) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", path, i)
		}
		objs = append(objs, o)
	}
}

// mergeTemplateLabels adds labels to spec.template.metadata.labels of
// workloads that have a pod template.
func mergeTemplateLabels(o *unstructured.Unstructured, l map[string]string) error {
	if _, found, _ := unstructured.NestedMap(o.Object, "spec", "template"); !found {
		return nil
	}
	cur, _, err := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
	if err != nil {
		return fmt.Errorf("%s %s: template labels: %w", o.GetKind(), o.GetName(), err)
	}
	return unstructured.SetNestedStringMap(o.Object, merge(cur, l), "spec", "template", "metadata", "labels")
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
