package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runHook runs a lifecycle hook handler (preStop) of container c: httpGet
// against the pod's backend, sleep, or exec as a local process (the test
// kubelet has no containers to exec into) with the container's environment
// (containerEnv). ctx carries the grace period.
func runHook(ctx context.Context, pod *corev1.Pod, ip netip.Addr, c corev1.Container, h *corev1.LifecycleHandler) error {
	switch {
	case h.HTTPGet != nil:
		return httpGet(ctx, ip, c, h.HTTPGet)
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case h.Exec != nil:
		env, err := containerEnv(pod, ip, c)
		if err != nil {
			return fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		return runLocal(ctx, h.Exec.Command, env)
	case h.TCPSocket != nil:
		return fmt.Errorf("pod %s/%s: tcpSocket hooks are deprecated and not supported", pod.Namespace, pod.Name)
	default:
		return fmt.Errorf("pod %s/%s: hook has no handler the test kubelet supports", pod.Namespace, pod.Name)
	}
}
