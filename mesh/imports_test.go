package mesh

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoKubernetesOrEnvoyImports keeps the mesh model free of Kubernetes and
// Envoy types, so translation depends on the model alone.
func TestNoKubernetesOrEnvoyImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"k8s.io/", "sigs.k8s.io/", "github.com/envoyproxy/", "google.golang.org/grpc", "github.com/cncf/xds"}
	checked := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, p := range forbidden {
				if strings.HasPrefix(path, p) {
					t.Errorf("%s imports %s: the mesh model must not depend on Kubernetes or Envoy", f, path)
				}
			}
		}
		checked++
	}
	if checked < 4 {
		t.Fatalf("checked only %d files; expected the model's sources", checked)
	}
}
