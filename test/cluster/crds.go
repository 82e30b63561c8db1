package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// GatewayAPIModule is the Go module whose standard-channel CRDs Install
// GatewayAPI applies; its version is the one in go.mod.
const GatewayAPIModule = "sigs.k8s.io/gateway-api"

// GatewayAPICRDDirEnv, when set, names a directory of CRD YAML to install
// instead of the module's config/crd/standard.
const GatewayAPICRDDirEnv = "SLUICE_GATEWAY_API_CRDS"

// GatewayAPICRDDir returns the directory of the standard-channel Gateway
// API CRDs: $SLUICE_GATEWAY_API_CRDS, else config/crd/standard of the
// module in the module cache (`go list -m`, which needs no network once the
// module is downloaded, as building Sluice does).
func GatewayAPICRDDir(ctx context.Context) (string, error) {
	if dir := os.Getenv(GatewayAPICRDDirEnv); dir != "" {
		return dir, nil
	}
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", GatewayAPIModule).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("locate %s (set %s to a CRD directory instead): %s", GatewayAPIModule, GatewayAPICRDDirEnv, msg)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("locate %s: not in the module cache (go mod download %s)", GatewayAPIModule, GatewayAPIModule)
	}
	return filepath.Join(dir, "config", "crd", "standard"), nil
}

// LoadGatewayAPICRDs reads the CustomResourceDefinitions in dir (other
// documents, such as the ValidatingAdmissionPolicy of the safe-upgrades
// check, are skipped).
func LoadGatewayAPICRDs(dir string) ([]*unstructured.Unstructured, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no CRD YAML in %s", dir)
	}
	slices.Sort(paths)
	var crds []*unstructured.Unstructured
	for _, p := range paths {
		objs, err := loadYAMLFile(p)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, o)
			}
		}
	}
	return crds, nil
}

// InstallGatewayAPI applies the standard-channel Gateway API CRDs and waits
// until the API server serves every version of every one of them.
func (c *Cluster) InstallGatewayAPI(ctx context.Context) error {
	dir, err := GatewayAPICRDDir(ctx)
	if err != nil {
		return err
	}
	crds, err := LoadGatewayAPICRDs(dir)
	if err != nil {
		return err
	}
	if _, err := c.Apply(ctx, "sluice-test-cluster", crds); err != nil {
		return fmt.Errorf("install Gateway API CRDs: %w", err)
	}
	want := map[string][]string{} // group/version -> plural names
	for _, crd := range crds {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if served, _ := vm["served"].(bool); served {
				name, _ := vm["name"].(string)
				want[group+"/"+name] = append(want[group+"/"+name], plural)
			}
		}
	}
	for gv, plurals := range want {
		if err := c.waitServed(ctx, gv, plurals); err != nil {
			return err
		}
	}
	return nil
}

// waitServed waits until discovery lists every resource in plurals under
// groupVersion.
func (c *Cluster) waitServed(ctx context.Context, groupVersion string, plurals []string) error {
	var missing []string
	for {
		missing = plurals
		if list, err := c.Client.Discovery().ServerResourcesForGroupVersionWithContext(ctx, groupVersion); err == nil {
			missing = slices.DeleteFunc(slices.Clone(plurals), func(p string) bool {
				return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == p })
			})
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway API CRDs: %s %v not served: %w", groupVersion, missing, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
