package cluster

import (
	"fmt"
	"net/netip"
	"os"

	corev1 "k8s.io/api/core/v1"
)

// containerEnv returns the environment of a process the test kubelet runs
// for container c of pod (an exec hook): the test's own environment (PATH
// and the like; there is no image to provide one), then the container's
// env in order, each entry a literal value or one of the downward API
// fields metadata.name, metadata.namespace, metadata.uid, spec.nodeName,
// spec.serviceAccountName and status.podIP (ip, the address the kubelet
// gave the pod). Not modelled: $(VAR) expansion, envFrom, and secret,
// config map and resource references, which are errors.
func containerEnv(pod *corev1.Pod, ip netip.Addr, c corev1.Container) ([]string, error) {
	env := os.Environ()
	if len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("container %s: envFrom is not supported by the test kubelet", c.Name)
	}
	for _, v := range c.Env {
		value := v.Value
		if from := v.ValueFrom; from != nil {
			if from.FieldRef == nil {
				return nil, fmt.Errorf("container %s: env %s: only fieldRef is supported by the test kubelet", c.Name, v.Name)
			}
			var err error
			if value, err = podField(pod, ip, from.FieldRef.FieldPath); err != nil {
				return nil, fmt.Errorf("container %s: env %s: %w", c.Name, v.Name, err)
			}
		}
		env = append(env, v.Name+"="+value)
	}
	return env, nil
}

func podField(pod *corev1.Pod, ip netip.Addr, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		if !ip.IsValid() {
			return "", nil
		}
		return ip.String(), nil
	default:
		return "", fmt.Errorf("fieldRef %q is not supported by the test kubelet", path)
	}
}
