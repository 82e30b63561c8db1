package cluster

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func statusTestPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "app", Image: "img"}, {Name: "side", Image: "img2"}},
		},
	}
}

// roundTrip mimics the API server storing a status: times lose sub-second
// precision.
func roundTrip(t *testing.T, st corev1.PodStatus) corev1.PodStatus {
	t.Helper()
	pod := statusTestPod()
	pod.Status = st
	data, err := pod.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.Pod
	if err := out.Unmarshal(data); err != nil {
		t.Fatal(err)
	}
	return out.Status
}

func TestPodStatusIsStableWhenNothingChanges(t *testing.T) {
	nodes, _ := newNodeStates(DefaultNodes(), []byte{1, 2})
	in := statusInput{node: nodes[0], ip: netip.MustParseAddr("10.244.1.7"), running: true, ready: true, startedAt: time.Now()}
	pod := statusTestPod()
	pod.Status = roundTrip(t, podStatus(pod, in))
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != "10.244.1.7" || pod.Status.HostIP != "10.244.0.1" {
		t.Fatalf("status = %+v", pod.Status)
	}
	if !podConditionTrue(pod.Status, corev1.PodReady) || len(pod.Status.ContainerStatuses) != 2 || !pod.Status.ContainerStatuses[1].Ready {
		t.Fatalf("not ready: %+v", pod.Status)
	}
	time.Sleep(1100 * time.Millisecond) // so that a fresh timestamp would differ
	if again := podStatus(pod, in); !equality.Semantic.DeepEqual(again, pod.Status) {
		t.Errorf("unchanged pod yields a different status:\n%+v\n%+v", again, pod.Status)
	}
}

func TestPodStatusTransitions(t *testing.T) {
	nodes, _ := newNodeStates(DefaultNodes(), []byte{1, 2})
	in := statusInput{node: nodes[0], ip: netip.MustParseAddr("10.244.1.7"), startErr: errors.New("port busy")}
	pod := statusTestPod()
	pod.Status = roundTrip(t, podStatus(pod, in))
	if pod.Status.Phase != corev1.PodPending || pod.Status.ContainerStatuses[0].State.Waiting == nil ||
		pod.Status.ContainerStatuses[0].State.Waiting.Message != "port busy" {
		t.Fatalf("failed start: %+v", pod.Status)
	}

	in = statusInput{node: nodes[0], ip: in.ip, running: true, ready: false, startedAt: time.Now()}
	pod.Status = roundTrip(t, podStatus(pod, in))
	scheduled := condition(pod.Status, corev1.PodScheduled)
	if pod.Status.Phase != corev1.PodRunning || podConditionTrue(pod.Status, corev1.PodReady) {
		t.Fatalf("running, not ready: %+v", pod.Status)
	}

	time.Sleep(1100 * time.Millisecond)
	in.ready = true
	pod.Status = roundTrip(t, podStatus(pod, in))
	if !podConditionTrue(pod.Status, corev1.PodReady) || !podConditionTrue(pod.Status, corev1.ContainersReady) {
		t.Fatalf("ready: %+v", pod.Status)
	}
	if got := condition(pod.Status, corev1.PodScheduled); !got.LastTransitionTime.Equal(&scheduled.LastTransitionTime) {
		t.Errorf("PodScheduled transition time moved from %v to %v without a change", scheduled.LastTransitionTime, got.LastTransitionTime)
	}

	in.running, in.ready, in.terminated = false, false, true
	pod.Status = roundTrip(t, podStatus(pod, in))
	cs := pod.Status.ContainerStatuses[0]
	if pod.Status.Phase != corev1.PodSucceeded || podConditionTrue(pod.Status, corev1.PodReady) || cs.State.Terminated == nil || cs.Ready {
		t.Errorf("terminated: %+v", pod.Status)
	}
}

func condition(st corev1.PodStatus, typ corev1.PodConditionType) corev1.PodCondition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.PodCondition{}
}

func podConditionTrue(st corev1.PodStatus, typ corev1.PodConditionType) bool {
	return condition(st, typ).Status == corev1.ConditionTrue
}
