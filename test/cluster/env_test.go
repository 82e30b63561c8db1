package cluster

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func TestExecHookGetsTheContainerEnvironment(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "shop", UID: "u-1"},
		Spec:       corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "api"},
	}
	out := filepath.Join(t.TempDir(), "env")
	c := corev1.Container{
		Name: "app",
		Env: []corev1.EnvVar{
			{Name: "GREETING", Value: "hello"},
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_UID", "metadata.uid"),
			fieldEnv("NODE", "spec.nodeName"),
			fieldEnv("SA", "spec.serviceAccountName"),
			fieldEnv("POD_IP", "status.podIP"),
		},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"sh", "-c", "env > " + out},
		}}},
	}
	if err := runHook(context.Background(), pod, netip.MustParseAddr("10.244.1.7"), c, c.Lifecycle.PreStop); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for _, want := range []string{"GREETING=hello", "POD_NAME=api-1", "POD_NAMESPACE=shop", "POD_UID=u-1", "NODE=node-a", "SA=api", "POD_IP=10.244.1.7"} {
		if !slices.Contains(lines, want) {
			t.Errorf("hook environment lacks %s:\n%s", want, b)
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "PATH=") }) {
		t.Errorf("hook environment lacks PATH")
	}
}

func TestContainerEnvRejectsWhatIsNotModelled(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n"}}
	for name, c := range map[string]corev1.Container{
		"secret":  {Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}}},
		"field":   {Env: []corev1.EnvVar{fieldEnv("X", "metadata.labels['app']")}},
		"envFrom": {EnvFrom: []corev1.EnvFromSource{{Prefix: "X"}}},
	} {
		if _, err := containerEnv(pod, netip.Addr{}, c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
