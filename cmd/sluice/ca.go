package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/rotation"
	"github.com/sluice-mesh/sluice/certs/service"
	"github.com/sluice-mesh/sluice/certs/trustbundle"
	"github.com/sluice-mesh/sluice/certs/wellknown"
	"github.com/sluice-mesh/sluice/discovery"
)

// caConfig is how `sluice serve` runs its CA and certificate service.
type caConfig struct {
	address     string
	trustDomain string
	namespace   string
	secretName  string
	dir         string
	provided    bool
	leafTTL     time.Duration
	maxLeafTTL  time.Duration
	audience    string
	tokensFile  string
	dnsNames    []string
	rate        float64
	burst       int
	// Rotation.
	rootTTL         time.Duration
	intermediateTTL time.Duration
	threshold       float64
	bundleTimeout   time.Duration
	reloadInterval  time.Duration
	// replica names this replica in the CA's store (default $POD_NAME,
	// else the host name).
	replica string
	// trustConfigMap names the ConfigMap the leader publishes the trust
	// bundle in, in every namespace; "" turns it off (trustbundle.go).
	trustConfigMap string
	// isLeader says whether this replica drives CA rotations; nil: always
	// (a single replica). Set by serve from its leader election.
	isLeader func() bool
}

func (c *caConfig) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.address, "ca-address", fmt.Sprintf(":%d", wellknown.DefaultCertificateServicePort), `address the certificate service (TLS gRPC) listens on; "" turns it off`)
	fs.StringVar(&c.trustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain of the identities issued")
	fs.StringVar(&c.namespace, "namespace", discovery.LeaderElectionNamespace(), "Sluice's own namespace, where the CA Secret is kept ($POD_NAMESPACE when set, else sluice-system)")
	fs.StringVar(&c.secretName, "ca-secret", ca.DefaultSecretName, "the Secret holding the CA (created on first start unless --ca-provided)")
	fs.StringVar(&c.dir, "ca-dir", "", "keep the CA in this directory instead of a Secret (required with --config-dir)")
	fs.BoolVar(&c.provided, "ca-provided", false, "the operator provides the CA (root.crt, intermediate.crt, intermediate.key; or tls.crt, tls.key, ca.crt): never generate one")
	fs.DurationVar(&c.leafTTL, "leaf-ttl", service.DefaultLeafTTL, "lifetime of workload certificates")
	fs.DurationVar(&c.maxLeafTTL, "max-leaf-ttl", 0, "longest lifetime a workload may ask for (default --leaf-ttl)")
	fs.StringVar(&c.audience, "token-audience", authn.DefaultAudience, "audience the workloads' projected ServiceAccount tokens must have")
	fs.StringVar(&c.tokensFile, "ca-tokens-file", "", "with --config-dir: a YAML file mapping bearer tokens to service accounts. DEVELOPMENT ONLY")
	fs.StringSliceVar(&c.dnsNames, "ca-dns-names", nil, "names in the certificate service's TLS certificate (default sluice.<namespace>.svc and sluice.<namespace>.svc.cluster.local)")
	fs.Float64Var(&c.rate, "ca-rate", float64(service.DefaultRate), "certificate requests per second allowed per service account")
	fs.IntVar(&c.burst, "ca-burst", service.DefaultBurst, "burst of certificate requests allowed per service account (cover a rollout)")
	fs.DurationVar(&c.rootTTL, "ca-root-ttl", ca.DefaultRootTTL, "lifetime of the roots Sluice generates (first start and rotations)")
	fs.DurationVar(&c.intermediateTTL, "ca-intermediate-ttl", ca.DefaultIntermediateTTL, "lifetime of the intermediates Sluice generates")
	fs.Float64Var(&c.threshold, "ca-rotation-threshold", rotation.DefaultThreshold, "rotate the root or the intermediate at this fraction of its life")
	fs.DurationVar(&c.bundleTimeout, "ca-bundle-timeout", 0, "during a root rotation, go on after this long even if connected agents have not applied the new trust bundle (they are logged); 0 waits until they have")
	fs.StringVar(&c.trustConfigMap, "ca-trust-configmap", trustbundle.DefaultName, `publish the trust bundle (key `+trustbundle.DefaultKey+`) in a ConfigMap of this name in every namespace, for agents' --ca-trust-file; "" turns it off`)
	fs.DurationVar(&c.reloadInterval, "ca-reload-interval", rotation.DefaultReloadInterval, "how often each replica reads the CA's store again (rotation progress, requests, other replicas' reports)")
}

// enabled says whether the certificate service runs: always with a
// cluster, and with --config-dir only when given a tokens file.
func (c caConfig) enabled(fileSource bool) bool {
	return c.address != "" && (!fileSource || c.tokensFile != "")
}

func (c caConfig) validate(fileSource bool) error {
	if !c.enabled(fileSource) {
		return nil
	}
	var errs []error
	if _, _, err := net.SplitHostPort(c.address); err != nil {
		errs = append(errs, fmt.Errorf("--ca-address %q is not host:port: %w", c.address, err))
	}
	if err := identity.ValidateTrustDomain(c.trustDomain); err != nil {
		errs = append(errs, fmt.Errorf("--trust-domain: %w", err))
	}
	if fileSource && c.dir == "" {
		errs = append(errs, errors.New("--config-dir with --ca-tokens-file needs --ca-dir: there is no cluster to keep the CA in"))
	}
	if !fileSource && c.tokensFile != "" {
		errs = append(errs, errors.New("--ca-tokens-file is for development with --config-dir only; with a cluster, tokens are checked by TokenReview"))
	}
	if c.leafTTL < time.Minute || (c.maxLeafTTL != 0 && c.maxLeafTTL < c.leafTTL) {
		errs = append(errs, fmt.Errorf("need 1m <= --leaf-ttl (%s) <= --max-leaf-ttl (%s)", c.leafTTL, c.maxLeafTTL))
	}
	if c.rate <= 0 || c.burst < 1 {
		errs = append(errs, fmt.Errorf("--ca-rate (%v) and --ca-burst (%d) must be positive", c.rate, c.burst))
	}
	if c.audience == "" {
		errs = append(errs, errors.New("--token-audience is empty"))
	}
	if c.intermediateTTL <= 0 || c.rootTTL < c.intermediateTTL {
		errs = append(errs, fmt.Errorf("need 0 < --ca-intermediate-ttl (%s) <= --ca-root-ttl (%s)", c.intermediateTTL, c.rootTTL))
	}
	if c.threshold <= 0 || c.threshold >= 1 {
		errs = append(errs, fmt.Errorf("--ca-rotation-threshold %v is not in (0, 1)", c.threshold))
	}
	if c.bundleTimeout < 0 || c.reloadInterval <= 0 {
		errs = append(errs, fmt.Errorf("--ca-bundle-timeout (%s) must not be negative and --ca-reload-interval (%s) must be positive", c.bundleTimeout, c.reloadInterval))
	}
	if err := validateTrustConfigMap(c.trustConfigMap); err != nil {
		errs = append(errs, err)
	}
	if c.bundleTimeout > 0 && c.bundleTimeout < 2*c.reloadInterval {
		errs = append(errs, fmt.Errorf("--ca-bundle-timeout %s is shorter than two --ca-reload-interval: other replicas could not report in time", c.bundleTimeout))
	}
	return errors.Join(errs...)
}

// certificateAuthority is the CA of `sluice serve`: the certificate
// service and the rotation of the CA it signs with.
type certificateAuthority struct {
	service  *service.Service
	rotation *rotation.Machine
}

// Serve serves certificates on lis and runs the rotation until ctx ends.
func (a *certificateAuthority) Serve(ctx context.Context, lis net.Listener) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.service.Serve(ctx, lis) })
	g.Go(func() error { return a.rotation.Run(ctx) })
	return g.Wait()
}

// caDebug is /debug/ca.
type caDebug struct {
	// Service: configuration, the CA (keys redacted), the agents watching
	// the trust bundle here and the version each applied.
	Service service.DebugInfo `json:"service"`
	// Rotation: phase, roots and their expiry, lagging agents, replicas.
	Rotation rotation.Status `json:"rotation"`
}

// Debug returns the /debug/ca page.
func (a *certificateAuthority) Debug() any {
	return caDebug{Service: a.service.Debug().(service.DebugInfo), Rotation: a.rotation.Status()}
}

// newCertificateService obtains the CA (generating and storing it on first
// start) and returns the certificate service with the CA's rotation, or
// nil when it is off. client is nil with --config-dir.
//
// Consumes: the CA store, workload tokens (TokenReview or tokens file),
// the agents' trust bundle acknowledgements, leadership (c.isLeader).
// Produces: workload certificates and trust bundles over TLS gRPC, the
// rotation's phases in the store (Serve), /debug/ca (Debug).
func newCertificateService(ctx context.Context, c caConfig, client kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) (*certificateAuthority, error) {
	fileSource := client == nil
	if !c.enabled(fileSource) {
		return nil, nil
	}
	log = log.With("component", "ca")
	store, err := c.store(client)
	if err != nil {
		return nil, err
	}
	gen := ca.GenerateOptions{TrustDomain: c.trustDomain, RootTTL: c.rootTTL, IntermediateTTL: c.intermediateTTL}
	if _, err := ca.LoadOrCreate(ctx, store, ca.BootstrapOptions{Generate: !c.provided, GenerateOptions: gen, Log: log}); err != nil {
		return nil, err
	}
	agents := service.NewAgents()
	replica := cmp.Or(c.replica, os.Getenv("POD_NAME"))
	machine, err := rotation.New(ctx, rotation.Config{
		Store:          store,
		Agents:         agents,
		IsLeader:       c.isLeader,
		Replica:        replica,
		ReadOnly:       c.provided,
		Generate:       gen,
		Threshold:      c.threshold,
		MaxLeafTTL:     max(c.leafTTL, c.maxLeafTTL),
		ReloadInterval: c.reloadInterval,
		BundleTimeout:  c.bundleTimeout,
		Registerer:     reg,
		Log:            log,
	})
	if err != nil {
		return nil, err
	}

	var auth authn.Authenticator
	var authName string
	if fileSource {
		tf, err := authn.LoadTokensFile(c.tokensFile)
		if err != nil {
			return nil, err
		}
		auth, authName = tf, "tokens file "+c.tokensFile+" (DEVELOPMENT ONLY)"
		log.Warn("DEVELOPMENT ONLY: certificates are issued to anyone who presents a token listed in the tokens file; never use this in production",
			"file", c.tokensFile, "tokens", tf.Len())
	} else {
		auth, authName = authn.NewTokenReview(client, c.audience), fmt.Sprintf("TokenReview (audience %q)", c.audience)
	}
	dnsNames := c.dnsNames
	if len(dnsNames) == 0 {
		dnsNames = []string{"sluice." + c.namespace + ".svc", "sluice." + c.namespace + ".svc.cluster.local"}
	}
	svc, err := service.New(service.Options{
		CA:                machine.Source().Current,
		CAChanges:         machine.Source().Changed,
		Agents:            agents,
		Authenticator:     auth,
		AuthenticatorName: authName,
		TrustDomain:       c.trustDomain,
		DefaultTTL:        c.leafTTL,
		MaxTTL:            c.maxLeafTTL,
		MinTTL:            min(service.DefaultMinTTL, c.leafTTL),
		Rate:              rate.Limit(c.rate),
		Burst:             c.burst,
		ServingDNSNames:   trimAll(dnsNames),
		Registerer:        reg,
		Log:               log,
	})
	if err != nil {
		return nil, err
	}
	return &certificateAuthority{service: svc, rotation: machine}, nil
}

// store is where the CA is kept: --ca-dir, else the Secret.
func (c caConfig) store(client kubernetes.Interface) (ca.Store, error) {
	switch {
	case c.dir != "":
		return ca.DirStore{Dir: c.dir}, nil
	case client != nil:
		return ca.SecretStore{Client: client, Namespace: c.namespace, Name: c.secretName}, nil
	}
	return nil, errors.New("no place to keep the CA: give --ca-dir")
}

func trimAll(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
