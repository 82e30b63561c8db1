package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/pflag"
)

const serveHelp = `Run the Sluice control plane.

Sluice watches Services, EndpointSlices, Pods, Namespaces and Nodes and serves
xDS (ADS, state-of-the-world and delta) to Envoy sidecars and proxyless gRPC
clients on --xds-address. Its health, metrics and debug pages are on
--debug-address: /healthz, /readyz, /metrics, /debug/proxies,
/debug/config_dump?proxy=<node id>, /debug/problems.

Where the mesh comes from:
  --config-dir DIR     a directory of Kubernetes YAML (Services, EndpointSlices,
                       Pods, ...), re-read on change; no cluster needed. Its
                       EndpointSlices may point at 127.0.0.1 for local demos.
  --kubeconfig FILE    a Kubernetes API server; without either flag Sluice uses
                       the in-cluster config, then $KUBECONFIG.`

// serveConfig is everything `sluice serve` is configured by.
type serveConfig struct {
	kubeconfig    string
	configDir     string
	xdsAddress    string
	debugAddress  string
	drainAddress  string
	clusterDomain string
	holdOff       time.Duration
	maxDelay      time.Duration
	logLevel      string
	logFormat     string
	maxMsgBytes   int
	shutdownGrace time.Duration
	// validateResources runs the deep validator on every translation.
	validateResources bool
	// pprof serves net/http/pprof on the debug address.
	pprof  bool
	ca     caConfig
	leader leaderConfig
}

func (c *serveConfig) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster to watch (default: in-cluster config, else $KUBECONFIG)")
	fs.StringVar(&c.configDir, "config-dir", "", "serve the mesh described by the Kubernetes YAML in this directory instead of a cluster")
	fs.StringVar(&c.xdsAddress, "xds-address", ":15010", "address the xDS gRPC server listens on")
	fs.StringVar(&c.debugAddress, "debug-address", "127.0.0.1:15014", "address of the HTTP server for /healthz, /readyz, /metrics and /debug")
	fs.StringVar(&c.drainAddress, "drain-address", "", "address of the HTTP server for GET /drain, e.g. :15016; it must be reachable from pods, whose preStop hook (`sluice agent wait-drained`) calls it; empty: not served")
	fs.StringVar(&c.clusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS suffix, used in service names (<svc>.<ns>.svc.<domain>)")
	fs.DurationVar(&c.holdOff, "hold-off", 20*time.Millisecond, "wait this long after a change for more changes before pushing")
	fs.DurationVar(&c.maxDelay, "max-delay", 200*time.Millisecond, "push at the latest this long after the first of a burst of changes")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&c.maxMsgBytes, "xds-max-message-bytes", 16<<20, "largest xDS message sent or received, in bytes")
	fs.BoolVar(&c.validateResources, "validate-resources", false, "run the deep xDS validator on every translation and count failures in sluice_xds_invalid_translations_total (for tests and debugging; costs CPU)")
	fs.BoolVar(&c.pprof, "debug-pprof", false, "serve Go profiles (net/http/pprof) under /debug/pprof/ on --debug-address")
	c.ca.addFlags(fs)
	c.leader.addFlags(fs)
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long open xDS streams get to close before they are cut")
}

func (c *serveConfig) validate() error {
	var errs []error
	if c.kubeconfig != "" && c.configDir != "" {
		errs = append(errs, errors.New("--kubeconfig and --config-dir are exclusive: watch a cluster or a directory, not both"))
	}
	for flag, addr := range map[string]string{"--xds-address": c.xdsAddress, "--debug-address": c.debugAddress, "--drain-address": c.drainAddress} {
		if flag == "--drain-address" && addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port: %w", flag, addr, err))
		}
	}
	if c.holdOff <= 0 || c.maxDelay < c.holdOff {
		errs = append(errs, fmt.Errorf("need 0 < --hold-off (%s) <= --max-delay (%s)", c.holdOff, c.maxDelay))
	}
	if c.maxMsgBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("--xds-max-message-bytes %d is below 1 MiB", c.maxMsgBytes))
	}
	if _, err := parseLogLevel(c.logLevel); err != nil {
		errs = append(errs, err)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf(`--log-format must be "text" or "json", not %q`, c.logFormat))
	}
	if err := c.ca.validate(c.configDir != ""); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
