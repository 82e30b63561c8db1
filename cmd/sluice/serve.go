package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/sluice-mesh/sluice/discovery"
	"github.com/sluice-mesh/sluice/xds/debug"
	"github.com/sluice-mesh/sluice/xds/drain"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := newFlagSet("serve", serveHelp, stdout)
	cfg.addFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(cfg, stderr)
	return serve(ctx, cfg, log)
}

// serve wires the control plane's components and runs them until ctx ends:
//
//	source (informers or files) ─▶ discovery.Store ─▶ discovery.Coalescer
//	    ─▶ server.Server.OnSnapshot ─▶ translate (per proxy group) ─▶ ADS streams
//
// and the debug HTTP server that reads from all of them.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store := discovery.NewStore()
	src, err := newSource(cfg, store, log)
	if err != nil {
		return err
	}

	// Leadership: decides the one replica that writes to the API server
	// (route status, CA rotations); every replica serves xDS.
	var runners []runner
	var leader discovery.Leader = discovery.AlwaysLeader{}
	if src.client != nil {
		var elector runner
		if leader, elector, err = newLeader(cfg.leader, src.client, reg, log); err != nil {
			return err
		}
		if elector != nil {
			runners = append(runners, elector)
		}
	}

	// Certificate authority: consumes workload CSRs and tokens, produces
	// certificates signed by the Sluice CA, and rotates the CA while this
	// replica leads. Nil when turned off.
	cfg.ca.isLeader = leader.IsLeader
	certs, err := newCertificateService(ctx, cfg.ca, src.client, reg, log)
	if err != nil {
		return fmt.Errorf("certificate service: %w", err)
	}
	// Trust bundle publisher: consumes the CA's trust bundle and
	// Namespaces, produces a ConfigMap with the bundle in every namespace
	// (the leader writes) for agents started later.
	if p, err := newTrustBundlePublisher(cfg.ca, certs, src.client, leader, reg, log); err != nil {
		return fmt.Errorf("trust bundle publisher: %w", err)
	} else if p != nil {
		runners = append(runners, p)
	}

	// xDS server: consumes snapshots, produces per-proxy ADS responses.
	opts := translate.Options{ClusterDomain: cfg.clusterDomain}
	if certs != nil {
		// Mutual TLS needs the CA: without it no proxy gets TLS settings.
		opts.TrustDomain = cfg.ca.trustDomain
	}
	xds := server.New(server.Config{
		MaxRecvMsgSize: cfg.maxMsgBytes,
		MaxSendMsgSize: cfg.maxMsgBytes,
		ShutdownGrace:  cfg.shutdownGrace,
	}, newTranslator(opts, cfg.validateResources, reg, log), reg, log)

	// Drain tracker: consumes the snapshots (after the server) and the
	// server's ACK state, produces "is this pod drained" for preStop hooks.
	drains := drain.NewTracker(xds, drain.Options{ClusterDomain: cfg.clusterDomain, Registerer: reg, Log: log.With("component", "drain")})

	// Coalescer: consumes store changes, produces snapshots for the server.
	metrics, err := discovery.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("discovery metrics: %w", err)
	}
	// Route status: consumes route statuses, writes them while this
	// replica leads (cluster source only).
	var statusReporters []discovery.RouteStatusReporter
	if src.gateway != nil {
		w, err := newRouteStatusWriter(leader, src.gateway, store, reg, log)
		if err != nil {
			return err
		}
		statusReporters = append(statusReporters, w)
		runners = append(runners, w)
	}

	var guard fastPathGuard
	coalescer := discovery.NewCoalescer(store, discovery.ConsumerFunc(func(ctx context.Context, u discovery.Update) {
		endpointsOnly := guard.endpointsOnly(u.Snapshot, u.EndpointsOnly)
		xds.OnSnapshot(ctx, u.Snapshot, endpointsOnly)
		drains.OnSnapshot(ctx, u.Snapshot, endpointsOnly)
	}), discovery.CoalescerOptions{
		HoldOff:         cfg.holdOff,
		MaxDelay:        cfg.maxDelay,
		Reporters:       src.reporters,
		StatusReporters: statusReporters,
		Metrics:         metrics,
		Logger:          log.With("component", "discovery"),
	})

	// Debug HTTP: consumes the state of all of the above.
	dbg := debug.NewHandler(debug.Options{
		Gatherer:   reg,
		Ready:      xds.Ready,
		Proxies:    func() any { return xds.Proxies() },
		ConfigDump: xds.ConfigDump,
		Log:        log.With("component", "debug"),
		Sections: []debug.Section{{
			Name: "problems",
			Help: "objects Sluice could not use as written, and what proxies cannot do",
			Data: func() any {
				return problemsPage{
					Discovery:   coalescer.Problems(),
					Files:       src.fileErrors(),
					Translation: xds.Warnings(),
				}
			},
		}},
	})

	xdsLis, err := net.Listen("tcp", cfg.xdsAddress)
	if err != nil {
		return fmt.Errorf("xDS listener: %w", err)
	}
	defer xdsLis.Close()
	debugLis, err := net.Listen("tcp", cfg.debugAddress)
	if err != nil {
		return fmt.Errorf("debug listener: %w", err)
	}
	defer debugLis.Close()
	log.Info("serving", "xds", xdsLis.Addr().String(), "debug", debugLis.Addr().String(), "source", sourceName(cfg))

	g, ctx := errgroup.WithContext(ctx)
	if certs != nil {
		caLis, err := net.Listen("tcp", cfg.ca.address)
		if err != nil {
			return fmt.Errorf("certificate service listener: %w", err)
		}
		defer caLis.Close()
		log.Info("serving certificates", "address", caLis.Addr().String())
		dbg.AddSection(debug.Section{Name: "ca", Help: "the CA (keys redacted) and the certificate service", Data: certs.Debug})
		g.Go(func() error { return certs.Serve(ctx, caLis) })
	}
	if cfg.drainAddress != "" {
		drainLis, err := net.Listen("tcp", cfg.drainAddress)
		if err != nil {
			return fmt.Errorf("drain listener: %w", err)
		}
		defer drainLis.Close()
		log.Info("serving drain waits", "address", drainLis.Addr().String())
		g.Go(func() error {
			return serveHTTP(ctx, drainLis, drain.NewHandler(drains, drain.HandlerOptions{Log: log.With("component", "drain")}))
		})
	}
	g.Go(func() error { return src.run.Run(ctx) })
	g.Go(func() error { return coalescer.Run(ctx) })
	for _, r := range runners {
		g.Go(func() error { return r.Run(ctx) })
	}
	g.Go(func() error { return xds.Serve(ctx, xdsLis) })
	g.Go(func() error { return drains.Run(ctx) })
	g.Go(func() error { return serveHTTP(ctx, debugLis, withPprof(dbg, cfg.pprof)) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

// problemsPage is /debug/problems.
type problemsPage struct {
	Discovery   []discovery.Problem   `json:"discovery"`
	Files       []discovery.FileError `json:"files,omitempty"`
	Translation []string              `json:"translation"`
}

// runner is a component with a blocking Run.
type runner interface {
	Run(ctx context.Context) error
}

// source is where the mesh's objects come from.
type source struct {
	run runner
	// client is the API server client; nil with --config-dir.
	client kubernetes.Interface
	// gateway is the Gateway API client; nil with --config-dir.
	gateway gatewayclient.Interface
	// reporters are told about problems (Events, logs).
	reporters []discovery.ProblemReporter
	// fileErrors lists unparsable files (file source only).
	fileErrors func() []discovery.FileError
}

// newSource returns the configured source of Kubernetes objects.
func newSource(cfg serveConfig, store *discovery.Store, log *slog.Logger) (source, error) {
	logReporter := discovery.ProblemReporterFunc(func(_ context.Context, problems []discovery.Problem) {
		for _, p := range problems {
			log.Warn("configuration problem", "problem", p.String())
		}
	})
	if cfg.configDir != "" {
		fsrc := discovery.NewFileSource(cfg.configDir, store, discovery.FileOptions{Logger: log.With("component", "files")})
		return source{run: fsrc, reporters: []discovery.ProblemReporter{logReporter}, fileErrors: fsrc.Errors}, nil
	}
	restConfig, err := loadKubeconfig(cfg.kubeconfig)
	if err != nil {
		return source{}, err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return source{}, fmt.Errorf("kubernetes client: %w", err)
	}
	gw, err := gatewayclient.NewForConfig(restConfig)
	if err != nil {
		return source{}, fmt.Errorf("gateway API client: %w", err)
	}
	ksrc, err := discovery.NewKubernetesSource(client, store, discovery.KubernetesOptions{
		Logger: log.With("component", "kubernetes"), Gateway: gw,
	})
	if err != nil {
		return source{}, fmt.Errorf("kubernetes source: %w", err)
	}
	return source{
		run:        ksrc,
		client:     client,
		gateway:    gw,
		reporters:  []discovery.ProblemReporter{ksrc, logReporter},
		fileErrors: func() []discovery.FileError { return nil },
	}, nil
}

func sourceName(cfg serveConfig) string {
	if cfg.configDir != "" {
		return "files:" + cfg.configDir
	}
	return "kubernetes"
}

// withPprof adds net/http/pprof under /debug/pprof/ when on (--debug-pprof).
func withPprof(h http.Handler, on bool) http.Handler {
	if !on {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveHTTP serves h on lis until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, lis net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("debug server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("debug server shutdown: %w", err)
	}
	return nil
}
