package cluster

import (
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// statusInput is what the pod worker knows about a pod's "containers".
type statusInput struct {
	node       *nodeState
	ip         netip.Addr
	running    bool // the backend is serving
	terminated bool // the backend has been stopped for the pod's deletion
	ready      bool
	startErr   error
	startedAt  time.Time
}

// podStatus is the status a kubelet would report: it starts from the pod's
// current status and keeps every timestamp whose condition did not change,
// so that an unchanged pod yields an equal status and no write.
func podStatus(pod *corev1.Pod, in statusInput) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	now := metav1.Now()
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.HostIP = in.node.ip.String()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	if in.ip.IsValid() {
		st.PodIP = in.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	switch {
	case in.terminated:
		st.Phase = corev1.PodSucceeded
	case in.running:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	st.Message, st.Reason = "", ""

	old := map[string]corev1.ContainerStatus{}
	for _, cs := range pod.Status.ContainerStatuses {
		old[cs.Name] = cs
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		started := metav1.NewTime(in.startedAt)
		cs := corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     "sluice-test://backend",
			ContainerID: fmt.Sprintf("sluice-test://%s/%s", pod.UID, c.Name),
			Ready:       in.ready,
			Started:     new(in.running),
		}
		if prev, ok := old[c.Name]; ok && prev.State.Running != nil {
			started = prev.State.Running.StartedAt
		} else if ok && prev.State.Terminated != nil {
			started = prev.State.Terminated.StartedAt
		}
		switch {
		case in.terminated:
			finished := now
			if prev, ok := old[c.Name]; ok && prev.State.Terminated != nil {
				finished = prev.State.Terminated.FinishedAt
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: finished}
		case in.running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		default:
			msg := "starting"
			if in.startErr != nil {
				msg = in.startErr.Error()
			}
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "BackendStarting", Message: msg}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "sluice-test://backend",
			ContainerID: fmt.Sprintf("sluice-test://%s/%s", pod.UID, c.Name),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "Completed", StartedAt: *st.StartTime, FinishedAt: *st.StartTime,
			}},
		})
	}

	setCondition(&st, corev1.PodScheduled, true, now)
	setCondition(&st, corev1.PodReadyToStartContainers, !in.terminated, now)
	setCondition(&st, corev1.PodInitialized, true, now)
	setCondition(&st, corev1.ContainersReady, in.ready, now)
	setCondition(&st, corev1.PodReady, in.ready, now)
	return st
}

// setCondition sets a condition, keeping its transition time if its status
// is unchanged.
func setCondition(st *corev1.PodStatus, typ corev1.PodConditionType, ok bool, now metav1.Time) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	for i, c := range st.Conditions {
		if c.Type == typ {
			if c.Status != status {
				st.Conditions[i] = corev1.PodCondition{Type: typ, Status: status, LastTransitionTime: now}
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: status, LastTransitionTime: now})
}
