package load

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-mesh/sluice/discovery"
	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// InProcess runs the xDS path of the control plane (source, store,
// coalescer with serve's fast-path guard, xDS server with the
// translator's address inputs) inside the harness's process: for the
// harness's own test, for CPU and heap profiles, and for file-source
// figures without the file source's one-second polling. It leaves out
// what `sluice serve` adds around that path (certificate service, leader
// election, route status writer, drain tracker). Its CPU and RSS figures
// include the harness.
type InProcess struct {
	// FileInterval is the file source's polling interval (default 10 ms).
	FileInterval time.Duration
	HoldOff      time.Duration
	MaxDelay     time.Duration
}

var _ ControlPlane = (*InProcess)(nil)

// Start implements ControlPlane for --config-dir and --kubeconfig sources.
func (ip *InProcess) Start(ctx context.Context, source []string, xdsAddress string) (*Instance, error) {
	if len(source) != 2 {
		return nil, fmt.Errorf("in-process control plane: unsupported source %q", source)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	store := discovery.NewStore()
	var src interface{ Run(context.Context) error }
	switch source[0] {
	case "--config-dir":
		interval := ip.FileInterval
		if interval <= 0 {
			interval = 10 * time.Millisecond
		}
		src = discovery.NewFileSource(source[1], store, discovery.FileOptions{Interval: interval})
	case "--kubeconfig":
		rc, err := clientcmd.BuildConfigFromFlags("", source[1])
		if err != nil {
			return nil, fmt.Errorf("in-process control plane: %w", err)
		}
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("in-process control plane: %w", err)
		}
		if src, err = discovery.NewKubernetesSource(client, store, discovery.KubernetesOptions{}); err != nil {
			return nil, fmt.Errorf("in-process control plane: %w", err)
		}
	default:
		return nil, fmt.Errorf("in-process control plane: unsupported source %q", source)
	}
	opts := translate.Options{}
	xds := server.New(server.Config{ShutdownGrace: time.Second}, server.TranslatorFuncs{
		TranslateFunc: func(s *mesh.Snapshot, p *mesh.Proxy) translate.Result { return translate.Translate(s, p, opts) },
		EndpointsFunc: func(s *mesh.Snapshot, p *mesh.Proxy) []types.Resource { return translate.Endpoints(s, p, opts) },
		InputsFunc:    func(s *mesh.Snapshot, p *mesh.Proxy) string { return translate.EndpointInputs(s, p, opts) },
	}, reg, nil)
	var lastIdentity uint64
	coalescer := discovery.NewCoalescer(store, discovery.ConsumerFunc(func(ctx context.Context, u discovery.Update) {
		// As `sluice serve` does (cmd/sluice/fastpath.go): an update that
		// adds or removes endpoint addresses or service accounts reaches
		// more than EDS and is not sent down the endpoint fast path.
		id := endpointIdentity(u.Snapshot)
		endpointsOnly := u.EndpointsOnly && id == lastIdentity
		lastIdentity = id
		xds.OnSnapshot(ctx, u.Snapshot, endpointsOnly)
	}), discovery.CoalescerOptions{HoldOff: ip.HoldOff, MaxDelay: ip.MaxDelay})

	started := time.Now()
	xdsLis, err := net.Listen("tcp", xdsAddress)
	if err != nil {
		return nil, fmt.Errorf("in-process control plane: %w", err)
	}
	debugLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		xdsLis.Close()
		return nil, fmt.Errorf("in-process control plane: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := xds.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return src.Run(gctx) })
	g.Go(func() error { return coalescer.Run(gctx) })
	g.Go(func() error { return xds.Serve(gctx, xdsLis) })
	g.Go(func() error {
		if err := hs.Serve(debugLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return hs.Close()
	})
	exited := make(chan struct{})
	var runErr error
	go func() {
		runErr = g.Wait()
		close(exited)
	}()
	inst := &Instance{
		XDSAddress: xdsAddress,
		DebugURL:   "http://" + debugLis.Addr().String(),
		PID:        os.Getpid(),
		Started:    started,
	}
	inst.stop = func() error {
		cancel()
		<-exited
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			return runErr
		}
		return nil
	}
	if err := waitReady(ctx, inst.DebugURL, exited, func() error { return runErr }); err != nil {
		cancel()
		<-exited
		return nil, err
	}
	return inst, nil
}

// endpointIdentity hashes which addresses, ports and service accounts stand
// behind each service port (what of the endpoints reaches more than EDS).
func endpointIdentity(s *mesh.Snapshot) uint64 {
	h := fnv.New64a()
	keys := slices.SortedFunc(maps.Keys(s.Endpoints), func(a, b mesh.PortKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port))
	})
	for _, k := range keys {
		fmt.Fprintf(h, "%s/%s:%d{", k.Namespace, k.Name, k.Port)
		for _, ep := range s.Endpoints[k] {
			fmt.Fprintf(h, "%s:%d@%s;", ep.Address, ep.Port, ep.ServiceAccount)
		}
		h.Write([]byte("}"))
	}
	return h.Sum64()
}
