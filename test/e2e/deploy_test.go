//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-mesh/sluice/test/cluster"
)

// deployDir is Sluice's kustomize base, relative to this package.
const deployDir = "../../deploy"

// TestDeployManifests applies every object of deploy/ to the test cluster
// with server-side apply and strict field validation, so a broken manifest
// fails CI, and checks what the manifests promise: the Deployment rolls out
// (2 replicas, probes answered, hardened security context), the Service gets
// endpoints, the PodDisruptionBudget protects a replica, and the
// ServiceAccount may do what Sluice needs and no more.
func TestDeployManifests(t *testing.T) {
	objs, err := cluster.LoadKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	applied, err := c.Apply(ctx, "sluice-e2e", objs)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string][]*unstructured.Unstructured{}
	for _, o := range applied {
		kinds[o.GetKind()] = append(kinds[o.GetKind()], o)
		t.Logf("applied %s %s", o.GetKind(), objectName(o))
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "PodDisruptionBudget"} {
		if len(kinds[k]) == 0 {
			t.Errorf("deploy/ has no %s", k)
		}
	}
	if len(kinds["Deployment"]) != 1 || len(kinds["ServiceAccount"]) != 1 {
		t.Fatalf("deploy/ has %d Deployments and %d ServiceAccounts, want one each", len(kinds["Deployment"]), len(kinds["ServiceAccount"]))
	}
	dep, sa := kinds["Deployment"][0], kinds["ServiceAccount"][0]
	ns := dep.GetNamespace()

	t.Run("deployment rolls out hardened", func(t *testing.T) {
		d, err := c.WaitForRollout(ctx, ns, dep.GetName())
		if err != nil {
			t.Fatal(err)
		}
		checkHardened(t, d)
		if d.Spec.Template.Spec.ServiceAccountName != sa.GetName() {
			t.Errorf("pods run as ServiceAccount %q, deploy/ defines %q", d.Spec.Template.Spec.ServiceAccountName, sa.GetName())
		}
	})

	t.Run("service has ready endpoints", func(t *testing.T) {
		for _, svc := range kinds["Service"] {
			if _, err := c.WaitForEndpoints(ctx, svc.GetNamespace(), svc.GetName(), func(eps []cluster.Endpoint) bool {
				return len(eps) >= 2 && cluster.CountEndpoints(eps, cluster.Endpoint.IsReady) == len(eps)
			}); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("disruption budget allows one eviction", func(t *testing.T) {
		for _, pdb := range kinds["PodDisruptionBudget"] {
			var allowed int32
			err := pollUntil(ctx, func() (bool, error) {
				got, err := c.Client.PolicyV1().PodDisruptionBudgets(pdb.GetNamespace()).Get(ctx, pdb.GetName(), metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				allowed = got.Status.DisruptionsAllowed
				return got.Status.ObservedGeneration >= got.Generation && got.Status.CurrentHealthy >= 2 && allowed >= 1, nil
			})
			if err != nil {
				t.Errorf("PodDisruptionBudget %s: %v (disruptions allowed: %d)", objectName(pdb), err, allowed)
			}
		}
	})

	t.Run("service account has least privilege", func(t *testing.T) {
		user := fmt.Sprintf("system:serviceaccount:%s:%s", sa.GetNamespace(), sa.GetName())
		for _, a := range []struct {
			verb, group, resource string
			allowed               bool
			namespace, name       string
		}{
			{"list", "", "services", true, "", ""},
			{"watch", "", "services", true, "", ""},
			{"list", "discovery.k8s.io", "endpointslices", true, "", ""},
			{"watch", "discovery.k8s.io", "endpointslices", true, "", ""},
			{"watch", "", "pods", true, "", ""},
			{"watch", "", "nodes", true, "", ""},
			{"create", "", "events", true, "", ""},
			{"get", "", "secrets", false, "", ""},
			{"create", "authentication.k8s.io", "tokenreviews", true, "", ""},
			{"get", "", "secrets", true, "sluice-system", "sluice-ca"},
			{"get", "", "secrets", false, "sluice-system", "another"},
			{"update", "", "secrets", true, "sluice-system", "sluice-ca"},
			{"update", "", "secrets", false, "sluice-system", "another"},
			{"list", "", "secrets", false, "sluice-system", ""},
			{"update", "coordination.k8s.io", "leases", true, "sluice-system", "sluice-leader"},
			{"update", "coordination.k8s.io", "leases", false, "kube-system", "kube-controller-manager"},
			{"list", "gateway.networking.k8s.io", "httproutes", true, "", ""},
			{"update", "", "configmaps", true, "default", "sluice-ca-root"},
			{"update", "", "configmaps", false, "default", "kube-root-ca.crt"},
			{"delete", "", "configmaps", false, "default", "sluice-ca-root"},
			{"update", "gateway.networking.k8s.io", "httproutes", false, "", ""},
			{"create", "", "secrets", true, "sluice-system", ""},
			{"create", "", "secrets", false, "default", ""},
			{"delete", "", "pods", false, "", ""},
			{"create", "", "services", false, "", ""},
			{"update", "discovery.k8s.io", "endpointslices", false, "", ""},
			{"create", "rbac.authorization.k8s.io", "clusterrolebindings", false, "", ""},
		} {
			sar, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{
					User:               user,
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.GetNamespace(), "system:authenticated"},
					ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace, Name: a.name},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != a.allowed {
				t.Errorf("%s may %s %s.%s: %v, want %v (%s)", user, a.verb, a.resource, a.group, sar.Status.Allowed, a.allowed, sar.Status.Reason)
			}
		}
	})

	t.Run("apply again changes nothing", func(t *testing.T) {
		again, err := c.Apply(ctx, "sluice-e2e", objs)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range again {
			if o.GetGeneration() != applied[i].GetGeneration() {
				t.Errorf("re-applying %s %s changed its spec: generation %d -> %d", o.GetKind(), objectName(o), applied[i].GetGeneration(), o.GetGeneration())
			}
		}
	})
}

// checkHardened checks what issue 2 asks of Sluice's Deployment: 2
// replicas, probes on /healthz and /readyz, resource requests, non-root,
// read-only root filesystem, no privilege escalation.
func checkHardened(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	for _, c := range pod.Containers {
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("container %s: readiness probe is not GET /readyz: %+v", c.Name, c.ReadinessProbe)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("container %s: liveness probe is not GET /healthz: %+v", c.Name, c.LivenessProbe)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("container %s: no cpu/memory requests: %v", c.Name, c.Resources.Requests)
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: root filesystem is not read-only", c.Name)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: privilege escalation is not disabled", c.Name)
		}
		nonRoot := (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) ||
			(pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("container %s: runAsNonRoot is not set", c.Name)
		}
	}
	if len(pod.Containers) == 0 {
		t.Error("deployment has no containers")
	}
}

func objectName(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}

// pollUntil calls cond every 100ms until it holds, fails, or ctx ends.
func pollUntil(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
