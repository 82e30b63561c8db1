// Command sluice-load runs Sluice's xDS load harness (package test/load)
// over a matrix of cases and prints a markdown table; the JSON goes under
// --results. test/load/bench.sh runs the standard matrix.
//
//	sluice-load --source file --services 100 --proxies 100,1000 --protocols delta,sotw
//	sluice-load --source kube --services 100,1000 --proxies 100,1000,5000
//
// With --source kube it starts a test cluster (test/cluster: etcd,
// kube-apiserver, kube-controller-manager) inside a private network
// namespace and writes the mesh into it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/sluice-mesh/sluice/test/cluster"
	"github.com/sluice-mesh/sluice/test/load"
)

func main() {
	args := os.Args[1:]
	var cfg config
	fs := pflag.NewFlagSet("sluice-load", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.flags(fs)
	if fs.Parse(args) == nil && cfg.source == "kube" {
		// The test cluster lives in a private network namespace.
		os.Exit(cluster.RunInNetNS(func() int { return run(args, os.Stdout, os.Stderr) }))
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

type config struct {
	source         string
	dir            string
	binary         string
	pin            bool
	services       []int
	endpoints      int
	namespaces     int
	perServiceSA   bool
	proxies        []int
	protocols      []string
	client         string
	nodeFormat     string
	streamsPerConn int
	grpcDeps       int
	flips          int
	newServices    int
	routeChanges   int
	burst          int
	burstWindow    time.Duration
	burstOn        []string
	restartOn      []string
	skip           []string
	timeout        time.Duration
	settle         time.Duration
	serveArgs      []string
	results        string
	decodeEvery    bool
	logLevel       string
	controlPlane   string
	cpuProfile     string
	memProfile     string
	profileFrom    string
}

func (c *config) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.source, "source", "file", `where the mesh is written: "file" (a --config-dir directory) or "kube" (a test cluster's API server)`)
	fs.StringVar(&c.dir, "dir", "", "file source directory (default: a temporary directory)")
	fs.StringVar(&c.binary, "sluice", "bin/sluice", "the sluice binary to run")
	fs.BoolVar(&c.pin, "pin", runtime.NumCPU() >= 2, "run the control plane on CPU 0 alone with GOMAXPROCS=1, the harness (and the test cluster) on CPU 1")
	fs.IntSliceVar(&c.services, "services", []int{100}, "service counts, run in increasing order (the world grows)")
	fs.IntVar(&c.endpoints, "endpoints", 10, "endpoints (pods) per service")
	fs.IntVar(&c.namespaces, "namespaces", 10, "namespaces the services are spread over")
	fs.BoolVar(&c.perServiceSA, "per-service-accounts", true, "give each service's pods their own service account (else the namespace's default)")
	fs.IntSliceVar(&c.proxies, "proxies", []int{100}, "proxy counts")
	fs.StringSliceVar(&c.protocols, "protocols", []string{"delta", "sotw"}, `xDS variants: "delta", "sotw"`)
	fs.StringVar(&c.client, "client", load.ClientEnvoy, `how proxies subscribe: "envoy" (wildcard CDS/LDS, then EDS/RDS by name) or "grpc" (LDS by name, then RDS, CDS, EDS; SotW only)`)
	fs.StringVar(&c.nodeFormat, "node-format", load.NodeSluice, `node id and metadata: "sluice", "istio" or "bare"`)
	fs.IntVar(&c.streamsPerConn, "streams-per-conn", 100, "ADS streams multiplexed on one gRPC connection (1: a connection per proxy)")
	fs.IntVar(&c.grpcDeps, "grpc-deps", 10, "services each gRPC-like proxy calls")
	fs.IntVar(&c.flips, "flips", 20, "endpoint readiness flips per case")
	fs.IntVar(&c.newServices, "new-services", 3, "services created per case")
	fs.IntVar(&c.routeChanges, "route-changes", 10, "weight changes of a GAMMA HTTPRoute per case")
	fs.IntVar(&c.burst, "burst", 100, "pod restarts per burst, in the cases --burst-on selects")
	fs.DurationVar(&c.burstWindow, "burst-window", time.Second, "the burst's restarts are spread over this window")
	fs.StringSliceVar(&c.burstOn, "burst-on", []string{"all"}, `cases that get a burst: "all", "none" or names like 1000x1000/delta`)
	fs.StringSliceVar(&c.restartOn, "restart-on", []string{"none"}, `cases that end with a control-plane restart: "all", "none" or names`)
	fs.StringSliceVar(&c.skip, "skip", nil, "cases to skip, by name (<proxies>x<services>/<protocol>)")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "longest wait for a change to reach every proxy")
	fs.DurationVar(&c.settle, "settle", 100*time.Millisecond, "pause after each change")
	fs.StringArrayVar(&c.serveArgs, "serve-arg", nil, "extra flag for `sluice serve` (repeatable), e.g. --serve-arg=--hold-off=10ms")
	fs.StringVar(&c.results, "results", "test/load/results", "directory for the JSON results")
	fs.BoolVar(&c.decodeEvery, "decode-every", false, "unmarshal every resource of every response (default: once per distinct payload, shared)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.controlPlane, "control-plane", "process", `"process" (run --sluice serve) or "inprocess" (the same components in this process, file source polled every 10 ms; CPU and memory figures then include the harness)`)
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile of this process to the file once the last case's proxies hold their config (useful with --control-plane inprocess)")
	fs.StringVar(&c.profileFrom, "cpuprofile-from", "start", `start the CPU profile at the "start" or once the first case's proxies hold their config ("steady": changes only)`)
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to the file (with --control-plane inprocess it covers the control plane)")
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := pflag.NewFlagSet("sluice-load", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(stderr, "sluice-load: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, cfg, args, stdout, log); err != nil {
		fmt.Fprintf(stderr, "sluice-load: %v\n", err)
		return 1
	}
	return 0
}

func bench(ctx context.Context, cfg config, args []string, stdout io.Writer, log *slog.Logger) error {
	startProfile := func() error { return nil }
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		started := false
		startProfile = func() error {
			if started {
				return nil
			}
			started = true
			return pprof.StartCPUProfile(f)
		}
		defer pprof.StopCPUProfile()
		if cfg.profileFrom != "steady" {
			if err := startProfile(); err != nil {
				return err
			}
		}
	}
	pinning := "none (control plane and harness share every CPU)"
	cpCPU := -1
	if cfg.pin {
		if err := load.PinProcess(0, 1); err != nil {
			return err
		}
		runtime.GOMAXPROCS(1)
		cpCPU = 0
		pinning = "control plane on CPU 0 (taskset -c 0, GOMAXPROCS=1); harness"
		if cfg.source == "kube" {
			pinning += ", etcd, kube-apiserver and kube-controller-manager"
		}
		pinning += " on CPU 1"
	}

	world := load.NewWorld("cluster.local", cfg.namespaces, cfg.perServiceSA)
	var writer load.Writer
	switch cfg.source {
	case "file":
		dir := cfg.dir
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "sluice-load-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		}
		writer = &load.FileWriter{Dir: dir}
	case "kube":
		c, err := cluster.Start(ctx, cluster.Options{})
		if err != nil {
			return err
		}
		defer c.Stop()
		if cfg.pin {
			for _, pid := range c.PIDs() {
				if err := load.PinProcess(pid, 1); err != nil {
					return err
				}
			}
		}
		rc := *c.RESTConfig
		rc.QPS, rc.Burst = 5000, 10000
		client, err := kubernetes.NewForConfig(&rc)
		if err != nil {
			return err
		}
		gw, err := gatewayclient.NewForConfig(&rc)
		if err != nil {
			return err
		}
		writer = &load.KubeWriter{Client: client, Gateway: gw, Kubeconfig: c.Kubeconfig, Workers: 16}
	default:
		return fmt.Errorf(`--source %q: want "file" or "kube"`, cfg.source)
	}
	xdsAddr, err := load.FreeAddress()
	if err != nil {
		return err
	}
	report := &load.Report{
		Started: time.Now(), Machine: load.ThisMachine(runtime.NumCPU()), Source: cfg.source,
		Pinning: pinning, Args: args,
	}
	var cp load.ControlPlane
	switch cfg.controlPlane {
	case "process":
		binary, err := filepath.Abs(cfg.binary)
		if err != nil {
			return err
		}
		if _, err := os.Stat(binary); err != nil {
			return fmt.Errorf("--sluice: %w (build it with `make build`)", err)
		}
		cp = &load.Process{Binary: binary, PinCPU: cpCPU, Args: cfg.serveArgs, LogDir: filepath.Join(cfg.results, "logs")}
	case "inprocess":
		cp = &load.InProcess{}
		pinning = "in-process control plane (figures include the harness); " + pinning
	default:
		return fmt.Errorf(`--control-plane %q: want "process" or "inprocess"`, cfg.controlPlane)
	}
	b := &load.Bench{
		World:      world,
		Writer:     writer,
		CP:         cp,
		XDSAddress: xdsAddr,
		Pinning:    pinning,
		Log:        log,
	}
	b.OnSteady = func(load.Case) {
		if err := startProfile(); err != nil {
			log.Error("CPU profile", "err", err)
		}
		if cfg.memProfile != "" {
			runtime.GC()
			f, err := os.Create(cfg.memProfile)
			if err != nil {
				log.Error("heap profile", "err", err)
				return
			}
			defer f.Close()
			if err := pprof.WriteHeapProfile(f); err != nil {
				log.Error("heap profile", "err", err)
			}
		}
	}
	services := slices.Sorted(slices.Values(cfg.services))
	var failed error
	for _, s := range services {
		if err := b.Populate(ctx, s, cfg.endpoints); err != nil {
			return err
		}
		for _, p := range cfg.proxies {
			for _, proto := range cfg.protocols {
				name := fmt.Sprintf("%dx%d/%s", p, s, proto)
				if selected(cfg.skip, name) {
					continue
				}
				c := load.Case{
					Name: name,
					Fleet: load.FleetOptions{
						Proxies: p, Client: cfg.client, Delta: proto == "delta", NodeFormat: cfg.nodeFormat,
						StreamsPerConn: cfg.streamsPerConn, GRPCDeps: cfg.grpcDeps, DecodeEvery: cfg.decodeEvery,
					},
					Flips:        cfg.flips,
					NewServices:  cfg.newServices,
					RouteChanges: cfg.routeChanges,
					Timeout:      cfg.timeout,
					Settle:       cfg.settle,
					Restart:      selected(cfg.restartOn, name),
				}
				if selected(cfg.burstOn, name) {
					c.Burst, c.BurstWindow = cfg.burst, cfg.burstWindow
				}
				res, err := b.Run(ctx, c)
				if err != nil {
					log.Error("case failed", "case", name, "err", err)
					failed = errors.Join(failed, fmt.Errorf("%s: %w", name, err))
					if res == nil {
						res = &load.CaseResult{Name: name, Proxies: p, Services: s, Endpoints: cfg.endpoints, Client: cfg.client, Protocol: proto}
					}
					res.Error = err.Error()
				}
				report.Cases = append(report.Cases, res)
				if ctx.Err() != nil {
					break
				}
			}
		}
	}
	report.WriteMarkdown(stdout)
	path, err := report.WriteJSON(cfg.results)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nJSON: %s\n", path)
	return failed
}

// selected reports whether a case name is in a list of names, or the list
// is "all".
func selected(list []string, name string) bool {
	for _, s := range list {
		if s = strings.TrimSpace(s); s == "all" || s == name {
			return true
		}
	}
	return false
}
