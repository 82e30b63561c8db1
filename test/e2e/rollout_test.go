//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/test/backend"
	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// Load for the rollout test: rolloutWorkers goroutines, each sending one RPC
// every rolloutInterval (spread over the clients), ~400 RPCs per second.
const (
	rolloutWorkers  = 16
	rolloutInterval = 40 * time.Millisecond
	minRPCRate      = 200.0
	rolloutsPerRun  = 3
	rolloutReplicas = 4
)

// TestRollingUpdateUnderLoad rolls a 4-replica Deployment (maxSurge 1,
// maxUnavailable 0) three times in a row under continuous load from grpc-go
// xDS clients. With the preStop hook `sluice wait-drained`, each old pod
// stops only after every client has ACKed endpoints without it: zero RPCs
// may fail. The same rollouts without the hook are the baseline; their
// failures are reported, not asserted (the test kubelet's backends stop
// with a gRPC GOAWAY, which grpc-go retries transparently, so the baseline
// often fails nothing here while real meshes fail some).
func TestRollingUpdateUnderLoad(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	drainAddr := "127.0.0.1:" + freePort(t)
	cp := startSluice(t, c, "--drain-address", drainAddr)
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	const ns = "rollout"
	require.NoError(t, c.CreateNamespace(ctx, ns))

	hook := append(waitDrainedCommand(t), "--url", "http://"+drainAddr, "--timeout", "20s")
	var withHook, baseline []rolloutResult

	t.Run("with the wait-drained hook: zero failed RPCs", func(t *testing.T) {
		withHook = rolloutUnderLoad(ctx, t, c, cp, ns, "hooked", hook)
		var failed int64
		for i, r := range withHook {
			failed += r.failed
			assert.Zerof(t, r.failed, "rollout %d with the hook failed %d of %d RPCs: %s", i+1, r.failed, r.total, r.errors)
		}
		assert.Zero(t, failed)

		// Every old pod (4 per rollout) waited for its drain, and none
		// timed out.
		drained := metricWithLabel(t, cp, "sluice_drain_waits_total", `outcome="drained"`)
		assert.Equal(t, float64(rolloutsPerRun*rolloutReplicas), drained, "drain waits that ended drained")
		for _, outcome := range []string{"timeout", "canceled", "stopped"} {
			assert.Zero(t, metricWithLabel(t, cp, "sluice_drain_waits_total", `outcome="`+outcome+`"`), "drain waits ending %s", outcome)
		}
		waits := drainWaits(t, cp)
		assert.Len(t, waits, rolloutsPerRun*rolloutReplicas, "'pod drained' log lines")
		for _, w := range waits {
			// The tracker knew the pod as an endpoint of the service.
			assert.Equal(t, 1, w.clusters, "drain of %s checked %d clusters", w.target, w.clusters)
			assert.True(t, strings.HasPrefix(w.target, ns+"/hooked-"), "drained %s", w.target)
		}
		t.Logf("drain waits (%d): %s", len(waits), summarize(waits))
	})

	t.Run("a proxy that has not ACKed holds the terminating pod", func(t *testing.T) {
		heldByUnackedProxy(ctx, t, c, cp, ns, "hooked", drainAddr)
	})

	t.Run("baseline without the hook", func(t *testing.T) {
		baseline = rolloutUnderLoad(ctx, t, c, cp, ns, "plain", nil)
	})

	for i, r := range withHook {
		t.Logf("rollout %d with hook: %s", i+1, r)
	}
	for i, r := range baseline {
		t.Logf("rollout %d baseline without hook: %s", i+1, r)
	}
	t.Logf("rollout with hook: %s; baseline without hook: %s", sumResults(withHook), sumResults(baseline))
}

// heldByUnackedProxy connects an ADS client of its own that subscribes to
// the service's endpoints, deletes one of its pods, and holds the ACK of the
// endpoints without that pod: the pod must stay (its preStop hook waiting)
// until the ACK, then go.
func heldByUnackedProxy(ctx context.Context, t *testing.T, c *cluster.Cluster, cp *controlPlane, ns, app, drainAddr string) {
	clusterName := translate.ClusterName(mesh.PortKey{Namespace: ns, Name: app, Port: grpcPort}, translate.DefaultClusterDomain)
	conn, err := grpc.NewClient(cp.XDSAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	require.NoError(t, err)
	const proxyID = "slow-proxy." + "rollout"
	node := &corev3.Node{Id: proxyID, UserAgentName: "gRPC Go", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		server.MetaNamespace: structpb.NewStringValue(ns),
	}}}
	require.NoError(t, stream.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{clusterName}}))
	recv := func() (*discoverygrpc.DiscoveryResponse, []string) {
		t.Helper()
		resp, err := stream.Recv()
		require.NoError(t, err)
		var addrs []string
		for _, a := range resp.GetResources() {
			cla := &endpointv3.ClusterLoadAssignment{}
			require.NoError(t, a.UnmarshalTo(cla))
			for _, loc := range cla.GetEndpoints() {
				for _, lb := range loc.GetLbEndpoints() {
					addrs = append(addrs, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
				}
			}
		}
		return resp, addrs
	}
	ack := func(resp *discoverygrpc.DiscoveryResponse) {
		t.Helper()
		require.NoError(t, stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{clusterName},
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}))
	}
	first, addrs := recv()
	require.Len(t, addrs, rolloutReplicas)
	ack(first)

	eps := waitReady(ctx, t, c, ns, app, rolloutReplicas)
	var pod, ip string
	for _, e := range eps {
		if e.IsReady() && e.TargetRef != nil {
			pod, ip = e.TargetRef.Name, e.Addresses[0]
			break
		}
	}
	require.Contains(t, addrs, ip)
	require.NoError(t, c.Client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}))
	// ACK what still has the pod (other changes may come first), hold the
	// first response without it.
	upd, addrs := recv()
	for i := 0; slices.Contains(addrs, ip); i++ {
		require.Less(t, i, 10, "ten EDS responses after the deletion still have %s", pod)
		ack(upd)
		upd, addrs = recv()
	}

	// Not ACKed: the hook keeps waiting, the pod stays.
	time.Sleep(2 * time.Second)
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	require.NoError(t, err, "pod %s went while a proxy had not ACKed its removal", pod)
	require.NotNil(t, p.DeletionTimestamp)
	var body string
	code, err := httpTextStatus(fmt.Sprintf("http://%s/drain?namespace=%s&pod=%s&timeout=200ms", drainAddr, ns, pod), &body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusGatewayTimeout, code, body)
	assert.Contains(t, body, proxyID, "the drain endpoint does not name the proxy holding the pod")

	acked := time.Now()
	ack(upd)
	var gone time.Duration
	require.Eventually(t, func() bool {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		gone = time.Since(acked)
		return apierrors.IsNotFound(err)
	}, 20*time.Second, 20*time.Millisecond, "pod %s still there 20s after the ACK", pod)
	t.Logf("pod %s held 2s+ by a proxy that had not ACKed; deleted %s after the ACK", pod, gone.Round(time.Millisecond))
	_, err = c.WaitForRollout(ctx, ns, app)
	require.NoError(t, err)
}

// rolloutResult is the load seen during one rollout.
type rolloutResult struct {
	total, failed int64
	took          time.Duration
	errors        string
}

func (r rolloutResult) String() string {
	s := fmt.Sprintf("%d RPCs, %d failed in %s (%.0f RPC/s)", r.total, r.failed, r.took.Round(100*time.Millisecond), float64(r.total)/r.took.Seconds())
	if r.errors != "" {
		s += ": " + r.errors
	}
	return s
}

func sumResults(rs []rolloutResult) string {
	var sum rolloutResult
	for _, r := range rs {
		sum.total += r.total
		sum.failed += r.failed
		sum.took += r.took
	}
	return fmt.Sprintf("%d rollouts, %d RPCs, %d failed (%.0f RPC/s)", len(rs), sum.total, sum.failed, float64(sum.total)/sum.took.Seconds())
}

// rolloutUnderLoad creates a Service and a Deployment named app (with the
// preStop exec hook when hook is set), starts two xDS clients sending
// continuous load, rolls the Deployment rolloutsPerRun times by changing a
// template label, and returns what the load saw during each rollout.
func rolloutUnderLoad(ctx context.Context, t *testing.T, c *cluster.Cluster, cp *controlPlane, ns, app string, hook []string) []rolloutResult {
	createService(ctx, t, c, ns, app, nil)
	createRollingDeployment(ctx, t, c, ns, app, hook)
	waitReady(ctx, t, c, ns, app, rolloutReplicas)
	clients := []*grpc.ClientConn{
		newClient(t, cp, app+"-load-1", ns, "", app),
		newClient(t, cp, app+"-load-2", ns, "", app),
	}
	for _, cc := range clients {
		waitForPods(ctx, t, cc, rolloutReplicas)
	}

	l := startLoad(ctx, clients)
	defer l.stop()
	// Load before the first rollout, as a sanity check of the rate.
	time.Sleep(time.Second)
	var out []rolloutResult
	for i := 1; i <= rolloutsPerRun; i++ {
		before, start := l.counts(), time.Now()
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"labels":{"rollout":"%d"}}}}}`, i)
		_, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, app, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
		require.NoError(t, err)
		_, err = c.WaitForRollout(ctx, ns, app)
		require.NoError(t, err, "rollout %d of %s", i, app)
		after := l.counts()
		r := rolloutResult{total: after.total - before.total, failed: after.failed - before.failed, took: time.Since(start), errors: l.errorSummary()}
		out = append(out, r)
		t.Logf("%s rollout %d: %s", app, i, r)
		assert.GreaterOrEqual(t, float64(r.total)/r.took.Seconds(), minRPCRate, "load during rollout %d below %v RPC/s", i, minRPCRate)
		// The new pods serve: RPCs reach all four.
		for _, cc := range clients {
			waitForPods(ctx, t, cc, rolloutReplicas)
		}
	}
	return out
}

// createRollingDeployment creates a Deployment of rolloutReplicas backends
// labelled app=<app>, rolling one pod at a time (maxSurge 1,
// maxUnavailable 0, minReadySeconds 1), with hook as its preStop exec command when set. The
// hook gets the pod's name, namespace and IP from the downward API.
func createRollingDeployment(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, app string, hook []string) {
	t.Helper()
	labels := map[string]string{"app": app}
	container := corev1.Container{
		Name:  "backend",
		Image: "sluice.test/backend",
		Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: grpcPort}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort}},
			PeriodSeconds: 1,
		},
	}
	if hook != nil {
		container.Env = []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
		}
		container.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: hook}}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(rolloutReplicas)),
			// Each new pod serves a second before an old one goes, so a
			// rollout lasts a few seconds of load.
			MinReadySeconds: 1,
			Selector:        &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       new(intstr.FromInt32(1)),
					MaxUnavailable: new(intstr.FromInt32(0)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64(30)),
					Containers:                    []corev1.Container{container},
				},
			},
		},
	}
	_, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	require.NoError(t, err)
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// waitDrainedCommand is the built sluice binary's wait-drained command:
// `sluice agent wait-drained` when the binary has it, else the top-level
// `sluice wait-drained`.
func waitDrainedCommand(t *testing.T) []string {
	t.Helper()
	bin := sluiceBinary(t)
	for _, cmd := range [][]string{{bin, "agent", "wait-drained"}, {bin, "wait-drained"}} {
		if exec.Command(cmd[0], append(cmd[1:], "--help")...).Run() == nil {
			return cmd
		}
	}
	t.Fatalf("%s has neither `agent wait-drained` nor `wait-drained`", bin)
	return nil
}

// load sends RPCs continuously and counts them.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	total, failed atomic.Int64
	mu            sync.Mutex
	errs          map[string]int
}

type loadCounts struct{ total, failed int64 }

func startLoad(ctx context.Context, clients []*grpc.ClientConn) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel, errs: map[string]int{}}
	for w := range rolloutWorkers {
		cc := clients[w%len(clients)]
		l.wg.Go(func() {
			tick := time.NewTicker(rolloutInterval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				rpcCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := backend.WhoGRPC(rpcCtx, cc)
				cancel()
				if ctx.Err() != nil {
					return // stopping: not counted
				}
				l.total.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs[status.Code(err).String()+": "+status.Convert(err).Message()]++
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

func (l *load) counts() loadCounts { return loadCounts{l.total.Load(), l.failed.Load()} }

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// errorSummary lists the distinct errors so far with their counts.
func (l *load) errorSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for msg, n := range l.errs {
		parts = append(parts, fmt.Sprintf("%d× %s", n, msg))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// metricWithLabel returns the value of the series of a metric whose labels
// contain label, 0 when there is none.
func metricWithLabel(t *testing.T, cp *controlPlane, name, label string) float64 {
	t.Helper()
	var body string
	require.NoError(t, httpText(cp.DebugURL+"/metrics", &body))
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, label) {
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			require.NoError(t, err, line)
			return v
		}
	}
	return 0
}

func httpText(url string, out *string) error {
	code, err := httpTextStatus(url, out)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s: %d", url, code)
	}
	return err
}

func httpTextStatus(url string, out *string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	*out = string(b)
	return resp.StatusCode, nil
}

var drainedLine = regexp.MustCompile(`msg="pod drained" .*target="?([^ "]+)[^=]* .*waited=(\S+) clusters=(\d+)`)

// drainWait is one drain wait that ended drained, from the control plane's
// log.
type drainWait struct {
	target   string
	waited   time.Duration
	clusters int
}

func drainWaits(t *testing.T, cp *controlPlane) []drainWait {
	t.Helper()
	cp.logMu.Lock()
	log := cp.log.String()
	cp.logMu.Unlock()
	var out []drainWait
	for _, m := range drainedLine.FindAllStringSubmatch(log, -1) {
		d, err := time.ParseDuration(m[2])
		require.NoError(t, err, m[0])
		n, err := strconv.Atoi(m[3])
		require.NoError(t, err, m[0])
		out = append(out, drainWait{target: m[1], waited: d, clusters: n})
	}
	return out
}

func summarize(ws []drainWait) string {
	if len(ws) == 0 {
		return "none"
	}
	s := make([]time.Duration, 0, len(ws))
	for _, w := range ws {
		s = append(s, w.waited)
	}
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return fmt.Sprintf("min %s, median %s, mean %s, max %s", s[0], s[len(s)/2], (sum / time.Duration(len(s))).Round(time.Millisecond), s[len(s)-1])
}
