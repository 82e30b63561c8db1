// Package cluster runs a real Kubernetes control plane for Sluice's
// end-to-end tests and for `make cluster`: etcd, kube-apiserver and
// kube-controller-manager built from pinned releases (see tools/build.sh),
// plus an in-process test kubelet that registers zoned Nodes, binds Pods and
// runs each Pod's containers as a real gRPC/HTTP backend (test/backend) on
// the Pod's IP. Pod IPs come from PodNetworkCIDR, which exists only inside
// the private network namespace RunInNetNS creates, so the cluster must run
// there.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	corev1 "k8s.io/api/core/v1"
)

// KeepDirEnv, when set, keeps cluster directories (data, credentials,
// logs) after the cluster stops, for debugging.
const KeepDirEnv = "SLUICE_KEEP_CLUSTER_DIR"

// Options configure a test cluster. The zero value is a good default.
type Options struct {
	// BinDir holds etcd, kube-apiserver and kube-controller-manager; empty
	// means BinDir(ctx), which builds them on first use.
	BinDir string
	// Dir keeps the cluster's data, credentials, kubeconfig and logs; empty
	// means a new temporary directory that Stop removes.
	Dir string
	// Nodes the test kubelet registers; empty means DefaultNodes().
	Nodes []Node
	// StartTimeout bounds Start once the binaries exist; default 2 minutes.
	StartTimeout time.Duration
	// SkipGatewayAPI leaves out the Gateway API CRDs, which Start installs
	// by default (see InstallGatewayAPI).
	SkipGatewayAPI bool
}

// Cluster is a running test cluster.
type Cluster struct {
	// Dir holds the cluster's files; logs are in Dir/logs.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig (credentials inline).
	Kubeconfig string
	// RESTConfig and Client act as cluster admin (O=system:masters).
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	// Kubelet is the test kubelet that runs the cluster's pods.
	Kubelet *Kubelet
	// StartupDuration is how long Start took, binaries excluded.
	StartupDuration time.Duration

	spawner    *spawner
	procs      []*process // in start order: etcd, kube-apiserver, kube-controller-manager
	kubeletLog *os.File
	removeDir  bool
	stopOnce   sync.Once
	stopErr    error
}

// Start starts a cluster and returns once the apiserver is ready, the
// controller-manager runs and the test kubelet's nodes are registered. On
// error everything already started is stopped again and the error includes
// the tail of the failing component's log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := checkPodNetwork(); err != nil {
		return nil, err
	}
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = BinDir(ctx); err != nil {
			return nil, err
		}
	} else if err := checkBinaries(binDir); err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	begin := time.Now()
	c := &Cluster{Dir: opts.Dir, spawner: newSpawner()}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "sluice-cluster-")
		if err != nil {
			c.spawner.close()
			return nil, fmt.Errorf("create cluster directory: %w", err)
		}
		c.Dir, c.removeDir = dir, true
	}
	if err := c.start(ctx, binDir, opts.Nodes); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	if !opts.SkipGatewayAPI {
		if err := c.InstallGatewayAPI(ctx); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
	}
	c.StartupDuration = time.Since(begin)
	return c, nil
}

func (c *Cluster) start(ctx context.Context, binDir string, nodes []Node) error {
	logDir := filepath.Join(c.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	creds, err := newPKI()
	if err != nil {
		return err
	}
	files, err := creds.writeFiles(c.Dir)
	if err != nil {
		return err
	}
	free, err := freePorts(3)
	if err != nil {
		return err
	}
	p := ports{etcdClient: free[0], etcdPeer: free[1], apiserver: free[2]}
	run := func(name string, args []string) (*process, error) {
		proc, err := startProcess(c.spawner, name, filepath.Join(binDir, name), args, filepath.Join(logDir, name+".log"))
		if err != nil {
			return nil, err
		}
		c.procs = append(c.procs, proc)
		return proc, nil
	}

	etcd, err := run("etcd", etcdArgs(c.Dir, p))
	if err != nil {
		return err
	}
	etcdHealth := fmt.Sprintf("http://127.0.0.1:%d/health", p.etcdClient)
	if err := waitFor(ctx, etcd, "to report healthy", func(ctx context.Context) bool { return httpOK(ctx, etcdHealth) }); err != nil {
		return err
	}

	apiserver, err := run("kube-apiserver", apiserverArgs(p, files))
	if err != nil {
		return err
	}
	c.RESTConfig = adminRESTConfig(fmt.Sprintf("https://127.0.0.1:%d", p.apiserver), creds)
	client, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	c.Client = client
	if err := waitFor(ctx, apiserver, "to become ready (/readyz)", func(ctx context.Context) bool {
		var code int
		client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&code)
		return code == http.StatusOK
	}); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.RESTConfig); err != nil {
		return err
	}

	kcm, err := run("kube-controller-manager", controllerManagerArgs(c.Kubeconfig, files))
	if err != nil {
		return err
	}

	if len(nodes) == 0 {
		nodes = DefaultNodes()
	}
	if c.kubeletLog, err = os.Create(filepath.Join(logDir, "test-kubelet.log")); err != nil {
		return fmt.Errorf("create kubelet log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(c.kubeletLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if c.Kubelet, err = NewKubelet(client, nodes, log); err != nil {
		return err
	}
	if err := c.Kubelet.Start(ctx); err != nil {
		return err
	}

	// Pods can only be created once the serviceaccount controller made the
	// namespace's default ServiceAccount; waiting for it also proves the
	// controller-manager works.
	return waitFor(ctx, kcm, "to create the default ServiceAccount", func(ctx context.Context) bool {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
}

// CreateNamespace creates a namespace and waits until pods can be created in
// it (its default ServiceAccount exists).
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	for {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s: default ServiceAccount not created: %w (last error: %w)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PIDs are the process ids of etcd, kube-apiserver and
// kube-controller-manager (each also the id of its process group).
func (c *Cluster) PIDs() []int {
	pids := make([]int, 0, len(c.procs))
	for _, p := range c.procs {
		pids = append(pids, p.pid())
	}
	return pids
}

// Stop tears the cluster down: the test kubelet (its backends) first, then
// kube-controller-manager, kube-apiserver, and etcd last (an apiserver
// without etcd hangs on shutdown). Every component's process group is
// killed; the directory is removed if Start created it. Stop is idempotent.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		if c.Kubelet != nil {
			c.Kubelet.Stop()
		}
		if c.kubeletLog != nil {
			errs = append(errs, c.kubeletLog.Close())
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			errs = append(errs, c.procs[i].stop(5*time.Second))
		}
		c.spawner.close()
		if c.removeDir && os.Getenv(KeepDirEnv) == "" {
			errs = append(errs, os.RemoveAll(c.Dir))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// LogTails returns the last n lines of every component's log, for test
// failure output.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s (%s):\n%s", p.name, p.logPath, p.logTail(n))
	}
	if c.kubeletLog != nil {
		kl := &process{name: "test-kubelet", logPath: c.kubeletLog.Name()}
		fmt.Fprintf(&b, "--- test kubelet (%s):\n%s", kl.logPath, kl.logTail(n))
	}
	return b.String()
}

// ProcessesGone reports an error naming any cluster process (or process
// group member) that still exists.
func (c *Cluster) ProcessesGone() error {
	var errs []error
	for _, p := range c.procs {
		if err := syscall.Kill(-p.pid(), 0); !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("%s process group %d still exists (kill -0: %v)", p.name, p.pid(), err))
		}
	}
	return errors.Join(errs...)
}

// waitFor polls cond until it holds, failing with p's log tail if p exits
// or ctx ends first.
func waitFor(ctx context.Context, p *process, what string, cond func(context.Context) bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := cond(pctx)
		cancel()
		if ok {
			return nil
		}
		select {
		case <-p.done:
			return p.failure("exited before it was ready: waiting for it " + what)
		case <-ctx.Done():
			return p.failure(fmt.Sprintf("did not come %s in time (%v)", what, ctx.Err()))
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// freePorts returns n distinct free loopback ports. Inside the test network
// namespace nothing else competes for them.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
