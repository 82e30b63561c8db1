package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probesPass runs every container's readiness probe once against the pod's
// backend; containers without one count as ready (the backend listens).
// Probes run every second whatever periodSeconds says; failure and success
// thresholds are 1.
func (w *podWorker) probesPass(ctx context.Context, pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		if c.ReadinessProbe == nil {
			continue
		}
		if err := runProbe(ctx, w.ip, c, c.ReadinessProbe); err != nil {
			w.log.Debug("readiness probe failed", "container", c.Name, "err", err)
			return false
		}
	}
	return true
}

// initialDelay is the largest initialDelaySeconds of the readiness probes.
func initialDelay(pod *corev1.Pod) time.Duration {
	var d time.Duration
	for _, c := range pod.Spec.Containers {
		if p := c.ReadinessProbe; p != nil {
			d = max(d, time.Duration(p.InitialDelaySeconds)*time.Second)
		}
	}
	return d
}

func runProbe(ctx context.Context, ip netip.Addr, c corev1.Container, p *corev1.Probe) error {
	timeout := time.Second
	if p.TimeoutSeconds > 0 {
		timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		return httpGet(ctx, ip, c, p.HTTPGet)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		host := hostOr(p.TCPSocket.Host, ip)
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.GRPC != nil:
		cc, err := grpc.NewClient(net.JoinHostPort(ip.String(), strconv.Itoa(int(p.GRPC.Port))),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("grpc health of %q is %v", service, resp.GetStatus())
		}
		return nil
	case p.Exec != nil:
		return runLocal(ctx, p.Exec.Command, nil)
	default:
		return fmt.Errorf("probe has no handler the test kubelet supports")
	}
}

// httpGet performs a probe's or hook's HTTP GET; 2xx and 3xx succeed.
func httpGet(ctx context.Context, ip netip.Addr, c corev1.Container, g *corev1.HTTPGetAction) error {
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return err
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(hostOr(g.Host, ip), strconv.Itoa(port)), g.Path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		// Like the kubelet: no certificate checks, no redirects to follow.
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// runLocal runs an exec action's command as a local process: the test
// kubelet has no containers to run it in. env, when not nil, is its
// environment (see containerEnv); nil inherits the test's.
func runLocal(ctx context.Context, command []string, env []string) error {
	if len(command) == 0 {
		return fmt.Errorf("exec action without a command")
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Env = env
	// Like the cluster's components, hook processes die with the test and
	// are killed as a group when their time is up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("exec %q: %w: %s", command, err, out)
	}
	return nil
}

// resolvePort turns a numeric or named port into a number using the
// container's ports.
func resolvePort(port intstr.IntOrString, c corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}

func hostOr(host string, ip netip.Addr) string {
	if host != "" {
		return host
	}
	return ip.String()
}
