//go:build e2e

package cluster

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-mesh/sluice/test/backend"
)

// TestKubelet runs bare pods through the test kubelet: placement, default
// ports, each kind of readiness probe, and each kind of preStop hook within
// the grace period.
func TestKubelet(t *testing.T) {
	t.Parallel() // with TestClusterBasics: two clusters in one network namespace
	c := StartForTest(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const ns = "kubelet"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	create := func(t *testing.T, pod *corev1.Pod) *corev1.Pod {
		t.Helper()
		pod.Namespace = ns
		if len(pod.Spec.Containers) == 0 {
			pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		}
		p, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitPod := func(t *testing.T, name string, ok func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		var p *corev1.Pod
		if err := poll(ctx, func(ctx context.Context) bool {
			var err error
			p, err = c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil && ok(p)
		}); err != nil {
			t.Fatalf("pod %s: %v; last: %+v", name, err, p)
		}
		return p
	}
	waitGone := func(t *testing.T, name string) {
		t.Helper()
		if err := poll(ctx, func(ctx context.Context) bool {
			_, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}); err != nil {
			t.Fatalf("pod %s not removed: %v", name, err)
		}
	}
	ready := func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	running := func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" }

	t.Run("placement", func(t *testing.T) {
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "in-zone-b"}, Spec: corev1.PodSpec{NodeSelector: map[string]string{ZoneLabel: "zone-b"}}})
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "on-node-a"}, Spec: corev1.PodSpec{NodeName: "node-a"}})
		if p := waitPod(t, "in-zone-b", running); p.Spec.NodeName != "node-b" || p.Status.HostIP != c.Kubelet.NodeIP("node-b") {
			t.Errorf("in-zone-b runs on %s (host IP %s)", p.Spec.NodeName, p.Status.HostIP)
		}
		if p := waitPod(t, "on-node-a", running); p.Status.HostIP != c.Kubelet.NodeIP("node-a") {
			t.Errorf("on-node-a host IP %s", p.Status.HostIP)
		}
	})

	t.Run("default ports and grpc probe", func(t *testing.T) {
		create(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "grpc-probe", Labels: map[string]string{"version": "v7"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "app",
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: backend.DefaultGRPCPort, Service: new(backend.TestServiceName)}}},
			}}},
		})
		p := waitPod(t, "grpc-probe", ready)
		cc, err := grpc.NewClient(net.JoinHostPort(p.Status.PodIP, "9090"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		want := backend.Identity{Pod: "grpc-probe", Namespace: ns, Zone: c.Kubelet.NodeZone(p.Spec.NodeName), Version: "v7"}
		if id, err := backend.WhoGRPC(ctx, cc); err != nil || id != want {
			t.Errorf("gRPC on default port: %+v, %v; want %+v", id, err, want)
		}
		if id, err := backend.WhoHTTP(ctx, http.DefaultClient, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/"); err != nil || id != want {
			t.Errorf("HTTP on default port: %+v, %v; want %+v", id, err, want)
		}
	})

	t.Run("tcp and exec probes", func(t *testing.T) {
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tcp-probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 80}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("web")}}},
		}}}})
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "exec-probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app",
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
		}}}})
		waitPod(t, "tcp-probe", ready)
		waitPod(t, "exec-probe", ready)
	})

	t.Run("failing probe and initial delay keep a pod unready", func(t *testing.T) {
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "http-503"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/status/503", Port: intstr.FromString("http")}}},
		}}}})
		delayed := create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "delayed"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app",
			ReadinessProbe: &corev1.Probe{InitialDelaySeconds: 2, ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
		}}}})
		waitPod(t, "http-503", running)
		waitPod(t, "delayed", ready)
		if took := time.Since(delayed.CreationTimestamp.Time); took < time.Second {
			t.Errorf("pod with a 2s initial delay ready after %v", took)
		}
		if p := waitPod(t, "http-503", running); ready(p) {
			t.Error("pod whose probe answers 503 is ready")
		}
	})

	t.Run("preStop hooks", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "prestop-ran")
		hooks := map[string]*corev1.LifecycleHandler{
			"hook-exec":  {Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo ran > " + marker}}},
			"hook-http":  {HTTPGet: &corev1.HTTPGetAction{Path: "/sleep/1s", Port: intstr.FromInt32(8080)}},
			"hook-sleep": {Sleep: &corev1.SleepAction{Seconds: 1}},
			// Longer than the grace period: the pod must still go in time.
			"hook-too-long": {Exec: &corev1.ExecAction{Command: []string{"sleep", "60"}}},
		}
		for name, h := range hooks {
			create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64(3)),
				Containers:                    []corev1.Container{{Name: "app", Image: "app", Lifecycle: &corev1.Lifecycle{PreStop: h}}},
			}})
		}
		ips := map[string]string{}
		for name := range hooks {
			ips[name] = waitPod(t, name, ready).Status.PodIP
		}
		start := time.Now()
		for name := range hooks {
			if err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// While its hook runs, a pod is terminating but still ready and its
		// backend still answers.
		p := waitPod(t, "hook-too-long", func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
		if !ready(p) {
			t.Error("terminating pod turned unready while its backend still serves")
		}
		if _, err := backend.WhoHTTP(ctx, http.DefaultClient, "http://"+net.JoinHostPort(ips["hook-too-long"], "8080")+"/"); err != nil {
			t.Errorf("terminating pod's backend does not answer: %v", err)
		}
		for name := range hooks {
			waitGone(t, name)
		}
		if took := time.Since(start); took < time.Second || took > 10*time.Second {
			t.Errorf("pods with 1s hooks and a 3s grace period took %v to go", took)
		}
		if data, err := os.ReadFile(marker); err != nil || string(data) != "ran\n" {
			t.Errorf("exec preStop hook did not run: %q, %v", data, err)
		}
		for name, ip := range ips {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second); err == nil {
				conn.Close()
				t.Errorf("backend of deleted pod %s still answers", name)
			}
		}
	})
}
