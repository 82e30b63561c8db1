//go:build e2e

package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestClusterBasics checks what components built on the cluster rely on:
// the kubeconfig works, nodes are registered with zones and pod CIDRs, the
// controller-manager publishes the root CA, service-account tokens for a
// custom audience pass TokenReview, and Apply validates strictly.
func TestClusterBasics(t *testing.T) {
	t.Parallel()
	c := StartForTest(t, Options{Nodes: []Node{{Name: "n1", Zone: "z1"}, {Name: "n2", Zone: "z2"}, {Name: "n3", Zone: "z3", Labels: map[string]string{"pool": "x"}}}})
	ctx := t.Context()

	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fromFile.Discovery().ServerVersion()
	if err != nil || v.GitVersion != "v1.37.2" {
		t.Errorf("server version via kubeconfig = %v, %v; want v1.37.2", v, err)
	}

	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes.Items))
	}
	for i, n := range nodes.Items {
		ready := len(n.Status.Conditions) == 1 && n.Status.Conditions[0].Type == corev1.NodeReady && n.Status.Conditions[0].Status == corev1.ConditionTrue
		if !ready || n.Labels[ZoneLabel] != "z"+string(rune('1'+i)) || n.Spec.PodCIDR == "" || n.Status.Addresses[0].Address != c.Kubelet.NodeIP(n.Name) {
			t.Errorf("node %s: ready %v, labels %v, podCIDR %q, addresses %v", n.Name, ready, n.Labels, n.Spec.PodCIDR, n.Status.Addresses)
		}
	}
	if nodes.Items[2].Labels["pool"] != "x" {
		t.Errorf("node n3 lacks its extra label: %v", nodes.Items[2].Labels)
	}

	if err := poll(ctx, func(ctx context.Context) bool {
		cm, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["ca.crt"], "BEGIN CERTIFICATE")
	}); err != nil {
		t.Errorf("kube-root-ca.crt not published: %v", err)
	}

	t.Run("token for a custom audience passes review", func(t *testing.T) {
		const audience = "sluice-test-audience"
		tok, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: new(int64(600))},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		review := func(audiences []string) *authenticationv1.TokenReview {
			r, err := c.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
				Spec: authenticationv1.TokenReviewSpec{Token: tok.Status.Token, Audiences: audiences},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := review([]string{audience}); !r.Status.Authenticated || r.Status.User.Username != "system:serviceaccount:default:default" {
			t.Errorf("review with the token's audience: %+v", r.Status)
		}
		if r := review([]string{"someone-else"}); r.Status.Authenticated {
			t.Errorf("token accepted for another audience: %+v", r.Status)
		}
	})

	t.Run("apply is strict", func(t *testing.T) {
		cm := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "strict", "namespace": "default"},
			"data":     map[string]any{"a": "b"},
			"bogus":    true,
		}}
		if _, err := c.Apply(ctx, "test", []*unstructured.Unstructured{cm}); err == nil || !strings.Contains(err.Error(), "bogus") {
			t.Errorf("apply with an unknown field = %v, want a strict-validation error", err)
		}
		delete(cm.Object, "bogus")
		out, err := c.Apply(ctx, "test", []*unstructured.Unstructured{cm})
		if err != nil || out[0].GetUID() == "" {
			t.Errorf("apply = %v, %v", out, err)
		}
	})

	start := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if err := c.ProcessesGone(); err != nil {
		t.Error(err)
	}
}
