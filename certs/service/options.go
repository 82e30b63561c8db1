package service

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
)

// Defaults of Options.
const (
	DefaultLeafTTL     = 24 * time.Hour
	DefaultMinTTL      = time.Minute
	DefaultMaxCSRBytes = 8 << 10
	DefaultRate        = rate.Limit(10)
	DefaultBurst       = 100
	DefaultServingTTL  = 24 * time.Hour
	DefaultMaxWatchAge = 30 * time.Minute
	// maxMessageBytes bounds whole requests; a CSR over MaxCSRBytes but
	// under this gets a clear InvalidArgument, a larger message is refused
	// by gRPC itself (ResourceExhausted).
	maxMessageBytes = 64 << 10
)

// Options configure the certificate service.
type Options struct {
	// CA returns the CA that signs now (a rotation changes it). Required.
	CA func() *ca.CA
	// CAChanges returns a channel closed when CA's result changes (e.g.
	// ca.Source.Changed), so that new trust bundles are pushed to agents
	// at once. Nil: the CA never changes.
	CAChanges func() <-chan struct{}
	// Agents records the agents watching the trust bundle; a new registry
	// when nil. Pass one to share it with the CA rotation.
	Agents *Agents
	// MaxWatchAge is how long a WatchTrustBundle stream lasts (with 10%
	// jitter) before the server ends it and the agent reconnects,
	// presenting a fresh token (30m).
	MaxWatchAge time.Duration
	// Authenticator checks the callers' tokens. Required.
	Authenticator authn.Authenticator
	// AuthenticatorName describes it for logs and /debug, e.g.
	// `TokenReview (audience "sluice")`.
	AuthenticatorName string
	// TrustDomain of the SPIFFE IDs issued; identity.DefaultTrustDomain when
	// empty.
	TrustDomain string
	// DefaultTTL is a leaf's lifetime when the request names none (24h).
	DefaultTTL time.Duration
	// MaxTTL caps requested lifetimes; DefaultTTL when zero.
	MaxTTL time.Duration
	// MinTTL raises shorter requests; one minute when zero.
	MinTTL time.Duration
	// MaxCSRBytes is the largest CSR accepted (8 KiB).
	MaxCSRBytes int
	// Rate and Burst limit requests per identity (10/s, burst 100).
	Rate  rate.Limit
	Burst int
	// ServingDNSNames are the names clients reach the service by, put in its
	// serving certificate. Required.
	ServingDNSNames []string
	// ServingID, when set, is Sluice's own SPIFFE ID, added to the serving
	// certificate.
	ServingID identity.ID
	// ServingTTL is the serving certificate's lifetime (24h).
	ServingTTL time.Duration
	// Registerer gets the metrics; none are registered when nil.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.CA == nil {
		errs = append(errs, errors.New("no CA"))
	}
	if o.Authenticator == nil {
		errs = append(errs, errors.New("no authenticator"))
	}
	if len(o.ServingDNSNames) == 0 {
		errs = append(errs, errors.New("no DNS name for the serving certificate"))
	}
	if o.TrustDomain == "" {
		o.TrustDomain = identity.DefaultTrustDomain
	}
	if err := identity.ValidateTrustDomain(o.TrustDomain); err != nil {
		errs = append(errs, err)
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = DefaultLeafTTL
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = o.DefaultTTL
	}
	if o.MinTTL == 0 {
		o.MinTTL = DefaultMinTTL
	}
	if o.MinTTL < 0 || o.MinTTL > o.DefaultTTL || o.DefaultTTL > o.MaxTTL {
		errs = append(errs, fmt.Errorf("need 0 < minimum TTL (%s) <= default TTL (%s) <= maximum TTL (%s)", o.MinTTL, o.DefaultTTL, o.MaxTTL))
	}
	if o.MaxCSRBytes == 0 {
		o.MaxCSRBytes = DefaultMaxCSRBytes
	}
	if o.MaxCSRBytes < 0 || o.MaxCSRBytes > maxMessageBytes/2 {
		errs = append(errs, fmt.Errorf("maximum CSR size %d is not in (0, %d]", o.MaxCSRBytes, maxMessageBytes/2))
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if o.Rate < 0 || o.Burst < 1 {
		errs = append(errs, fmt.Errorf("rate %v and burst %d must be positive", o.Rate, o.Burst))
	}
	if o.MaxWatchAge == 0 {
		o.MaxWatchAge = DefaultMaxWatchAge
	}
	if o.ServingTTL == 0 {
		o.ServingTTL = DefaultServingTTL
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AuthenticatorName == "" {
		o.AuthenticatorName = fmt.Sprintf("%T", o.Authenticator)
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("certificate service: %w", err)
	}
	return o, nil
}
