package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/service"
	"github.com/sluice-mesh/sluice/certs/wellknown"
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
}

func (c *caConfig) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.address, "ca-address", fmt.Sprintf(":%d", wellknown.DefaultCertificateServicePort), `address the certificate service (TLS gRPC) listens on; "" turns it off`)
	fs.StringVar(&c.trustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain of the identities issued")
	fs.StringVar(&c.namespace, "namespace", "sluice-system", "Sluice's own namespace: where the CA Secret is kept")
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
	return errors.Join(errs...)
}

// newCertificateService obtains the CA (generating and storing it on first
// start) and returns the certificate service, or nil when it is off.
// client is nil with --config-dir.
//
// Consumes: the CA store, workload tokens (TokenReview or tokens file).
// Produces: workload certificates over TLS gRPC (Serve), /debug/ca (Debug).
func newCertificateService(ctx context.Context, c caConfig, client kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) (*service.Service, error) {
	fileSource := client == nil
	if !c.enabled(fileSource) {
		return nil, nil
	}
	log = log.With("component", "ca")
	var store ca.Store
	if c.dir != "" {
		store = ca.DirStore{Dir: c.dir}
	} else if client != nil {
		store = ca.SecretStore{Client: client, Namespace: c.namespace, Name: c.secretName}
	} else {
		return nil, errors.New("no place to keep the CA: give --ca-dir")
	}
	m, err := ca.LoadOrCreate(ctx, store, ca.BootstrapOptions{
		Generate:        !c.provided,
		GenerateOptions: ca.GenerateOptions{TrustDomain: c.trustDomain},
		Log:             log,
	})
	if err != nil {
		return nil, err
	}
	signer, err := ca.New(m, ca.Options{})
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
	return service.New(service.Options{
		CA:                func() *ca.CA { return signer },
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
