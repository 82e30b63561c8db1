package cluster

import (
	"strings"
	"testing"
)

func TestLoadKustomization(t *testing.T) {
	objs, err := LoadKustomization("testdata/kustomize/base")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
		if o.GetLabels()["app.kubernetes.io/part-of"] != "demo" || o.GetAnnotations()["owner"] != "e2e" {
			t.Errorf("%s %s: labels %v annotations %v, want the kustomization's", o.GetKind(), o.GetName(), o.GetLabels(), o.GetAnnotations())
		}
	}
	want := []string{"Namespace /demo", "Deployment demo/web", "ClusterRole /reader"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("objects = %v, want %v", got, want)
	}
	dep := objs[1]
	tmpl := dep.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	if tmpl["app.kubernetes.io/part-of"] != "demo" || tmpl["app"] != "web" {
		t.Errorf("template labels = %v, want app and the includeTemplates label", tmpl)
	}
	sel := dep.Object["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
	if len(sel) != 1 {
		t.Errorf("selector = %v, must stay untouched", sel)
	}
}

func TestLoadKustomizationRefusesWhatItDoesNotImplement(t *testing.T) {
	for dir, want := range map[string]string{
		"testdata/kustomize/unsupported": "uses images, patches, which the test applier",
		"testdata/kustomize/selectors":   "includeSelectors are not supported",
		"testdata/kustomize/missing":     "read kustomization",
	} {
		_, err := LoadKustomization(dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadKustomization(%s) = %v, want error containing %q", dir, err, want)
		}
	}
}
