package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-mesh/sluice/certs/agent"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/wellknown"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

const agentHelp = `Run beside a workload (a sidecar container) and keep its mTLS certificate fresh.

The agent makes the workload's private key itself (the key never leaves the
pod), sends a CSR for spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
to Sluice's certificate service with the pod's projected ServiceAccount token
(audience "sluice"), and renews at about half of the certificate's life,
retrying with backoff while the service is unreachable and keeping the valid
certificate meanwhile. It also watches the trust bundle (WatchTrustBundle): a
CA rotation's new roots are handed out at once, without waiting for the
renewal, and acknowledged once applied (for --cert-dir, after gRPC's refresh
interval), which is what lets Sluice switch roots without failing a request.
It hands the certificate out in two ways:

  --sds-socket PATH   SDS for a local Envoy: secrets "default" (certificate and
                      key) and "ROOTCA" (trust bundle). Envoy must run as the
                      agent's user or group (the socket is mode 0660).
  --cert-dir DIR      files for proxyless gRPC: cert-chain.pem, key.pem (mode
                      0600: the application must run as the agent's user) and
                      root-cert.pem, each replaced atomically.
  --grpc-bootstrap F  with --cert-dir: also write the gRPC xDS bootstrap, with a
                      file_watcher certificate provider for those files, once
                      they exist. Point GRPC_XDS_BOOTSTRAP at it.

Pod spec: mount a projected serviceAccountToken volume (audience: sluice) at
the --token-file path, the CA's root certificate (e.g. a ConfigMap) at
--ca-trust-file, and share an emptyDir with the application for --sds-socket or
--cert-dir. --namespace and --service-account default to the token's subject.`

// agentConfig is what `sluice agent` is configured by.
type agentConfig struct {
	caAddress      string
	caServerName   string
	caTrustFile    string
	tokenFile      string
	trustDomain    string
	namespace      string
	serviceAccount string
	ttl            time.Duration
	sdsSocket      string
	certDir        string
	grpcBootstrap  string
	refresh        time.Duration
	workload       bootstrap.Workload
	logLevel       string
	logFormat      string
}

func (c *agentConfig) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.caAddress, "ca-address", fmt.Sprintf("sluice.sluice-system.svc:%d", wellknown.DefaultCertificateServicePort), "the certificate service's host:port")
	fs.StringVar(&c.caServerName, "ca-server-name", "", "the name in the certificate service's certificate (default: the host of --ca-address)")
	fs.StringVar(&c.caTrustFile, "ca-trust-file", "", "PEM roots that signed the certificate service's certificate: the CA's root.crt (required)")
	fs.StringVar(&c.tokenFile, "token-file", wellknown.DefaultTokenFile, "the projected ServiceAccount token (audience sluice), re-read at every request")
	fs.StringVar(&c.trustDomain, "trust-domain", identity.DefaultTrustDomain, "the mesh's SPIFFE trust domain")
	fs.StringVar(&c.namespace, "namespace", "", "the workload's namespace (default: from the token)")
	fs.StringVar(&c.serviceAccount, "service-account", "", "the workload's service account (default: from the token)")
	fs.DurationVar(&c.ttl, "ttl", 0, "certificate lifetime to ask for (default: the service's)")
	fs.StringVar(&c.sdsSocket, "sds-socket", "", `serve SDS on this Unix socket, e.g. `+wellknown.DefaultSDSSocket)
	fs.StringVar(&c.certDir, "cert-dir", "", `write certificate files here, e.g. `+wellknown.DefaultCertDir)
	fs.StringVar(&c.grpcBootstrap, "grpc-bootstrap", "", "with --cert-dir: write the gRPC xDS bootstrap here")
	fs.DurationVar(&c.refresh, "grpc-certificate-refresh", bootstrap.DefaultCertificateRefresh, "how often gRPC re-reads the certificate files (in the bootstrap)")
	fs.StringVar(&c.workload.XDSAddress, "xds-address", "", "with --grpc-bootstrap: the Sluice xDS address as host:port")
	fs.StringVar(&c.workload.Pod, "name", "", "the pod's name: shown in Sluice's /debug beside the trust bundle it holds, and put in the gRPC bootstrap")
	fs.StringVar(&c.workload.NodeID, "node-id", "", `with --grpc-bootstrap: xDS node id (default "<name>.<namespace>")`)
	fs.StringVar(&c.workload.IP, "ip", "", "with --grpc-bootstrap: the pod's IP")
	fs.StringVar(&c.workload.Zone, "zone", "", "with --grpc-bootstrap: the pod's zone")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
}

func (c agentConfig) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.caAddress); err != nil {
		errs = append(errs, fmt.Errorf("--ca-address %q is not host:port: %w", c.caAddress, err))
	}
	if c.caTrustFile == "" {
		errs = append(errs, errors.New("--ca-trust-file is required: the agent must verify the certificate service before sending its token"))
	}
	if c.sdsSocket == "" && c.certDir == "" {
		errs = append(errs, errors.New("nothing to hand the certificate to: give --sds-socket, --cert-dir or both"))
	}
	if c.grpcBootstrap != "" && c.certDir == "" {
		errs = append(errs, errors.New("--grpc-bootstrap needs --cert-dir (the bootstrap points gRPC at those files)"))
	}
	if c.grpcBootstrap == "" && c.workload.XDSAddress != "" {
		errs = append(errs, errors.New("--xds-address is only used with --grpc-bootstrap"))
	}
	if c.ttl < 0 {
		errs = append(errs, fmt.Errorf("--ttl %s is negative", c.ttl))
	}
	if err := identity.ValidateTrustDomain(c.trustDomain); err != nil {
		errs = append(errs, fmt.Errorf("--trust-domain: %w", err))
	}
	if _, err := parseLogLevel(c.logLevel); err != nil {
		errs = append(errs, err)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf(`--log-format must be "text" or "json", not %q`, c.logFormat))
	}
	return errors.Join(errs...)
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg agentConfig
	fs := newFlagSet("agent", agentHelp, stdout)
	cfg.addFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(serveConfig{logLevel: cfg.logLevel, logFormat: cfg.logFormat}, stderr)
	return runCertificateAgent(ctx, cfg, log)
}

// runCertificateAgent wires the agent:
//
//	token file ─▶ agent.Client ─▶ agent.Agent ─▶ SDS server (Unix socket)
//	                                          └─▶ certificate files ─▶ gRPC bootstrap
func runCertificateAgent(ctx context.Context, cfg agentConfig, log *slog.Logger) error {
	id, err := agentIdentity(cfg)
	if err != nil {
		return err
	}
	trust, err := os.ReadFile(cfg.caTrustFile)
	if err != nil {
		return fmt.Errorf("--ca-trust-file: %w", err)
	}
	client, err := agent.NewClient(agent.ClientConfig{
		Address: cfg.caAddress, ServerName: cfg.caServerName, TrustPEM: trust, TokenFile: cfg.tokenFile, Log: log,
	})
	if err != nil {
		return err
	}
	defer client.Close()

	g, ctx := errgroup.WithContext(ctx)
	var publishers []agent.Publisher
	if cfg.sdsSocket != "" {
		lis, err := agent.ListenUnix(cfg.sdsSocket)
		if err != nil {
			return err
		}
		sds := agent.NewSDSServer(log)
		publishers = append(publishers, sds)
		g.Go(func() error { return sds.Serve(ctx, lis) })
	}
	if cfg.certDir != "" {
		files := agent.FileWriter{Dir: cfg.certDir}
		publishers = append(publishers, files)
		if cfg.grpcBootstrap != "" {
			content, err := grpcBootstrapWithCertificates(cfg, id, files)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			publishers = append(publishers, agent.BootstrapFile{Path: cfg.grpcBootstrap, Content: content})
		}
	}
	a, err := agent.New(agent.Config{ID: id, Issuer: client, TTL: cfg.ttl, Publishers: publishers, ApplyDelay: applyDelay(cfg), Log: log})
	if err != nil {
		return err
	}
	log.Info("certificate agent starting", "id", id.String(), "ca", cfg.caAddress, "sds", cfg.sdsSocket, "certDir", cfg.certDir)
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return client.WatchTrustBundle(ctx, cfg.workload.Pod, a) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// applyDelay is how long after publishing a trust bundle the workload is
// sure to use it: gRPC re-reads the files every --grpc-certificate-refresh;
// Envoy applies an SDS push at once. A second more for slow disks and
// schedulers.
func applyDelay(cfg agentConfig) time.Duration {
	d := time.Second
	if cfg.certDir != "" {
		d += cfg.refresh
	}
	return d
}

// agentIdentity is the SPIFFE ID from the flags, the token filling in what
// they leave out.
func agentIdentity(cfg agentConfig) (identity.ID, error) {
	ns, sa := cfg.namespace, cfg.serviceAccount
	if ns == "" || sa == "" {
		token, err := os.ReadFile(cfg.tokenFile)
		if err != nil {
			return identity.ID{}, fmt.Errorf("--namespace and --service-account not given, and the token cannot be read: %w", err)
		}
		tns, tsa, err := agent.ServiceAccountFromToken(string(token))
		if err != nil {
			return identity.ID{}, fmt.Errorf("--namespace and --service-account not given, and %w", err)
		}
		ns = cmp.Or(ns, tns)
		sa = cmp.Or(sa, tsa)
	}
	id, err := identity.New(cfg.trustDomain, ns, sa)
	if err != nil {
		return identity.ID{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return id, nil
}

func grpcBootstrapWithCertificates(cfg agentConfig, id identity.ID, files agent.FileWriter) ([]byte, error) {
	w := cfg.workload
	w.Namespace, w.ServiceAccount = id.Namespace, id.ServiceAccount
	base, err := bootstrap.GRPC(w)
	if err != nil {
		return nil, err
	}
	chain, key, bundle := files.Paths()
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	return bootstrap.WithCertificateProviders(base, bootstrap.CertificateFiles{
		CertificateFile: abs(chain), PrivateKeyFile: abs(key), CACertificateFile: abs(bundle), RefreshInterval: cfg.refresh,
	})
}
