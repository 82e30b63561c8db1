package service

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// Refusal reasons beyond the CSR problems of ca.CSRProblem.
const (
	reasonNoToken          = "no_token"
	reasonBadToken         = "bad_token"
	reasonNotSA            = "not_service_account"
	reasonAuthnUnavailable = "token_review_unavailable"
	reasonRateLimited      = "rate_limited"
	reasonWrongTrustDomain = "wrong_trust_domain"
	reasonIdentityMismatch = "identity_mismatch"
	reasonBadTTL           = "bad_ttl"
	reasonSigningFailed    = "signing_failed"
)

var allReasons = []string{
	reasonNoToken, reasonBadToken, reasonNotSA, reasonAuthnUnavailable, reasonRateLimited,
	reasonWrongTrustDomain, reasonIdentityMismatch, reasonBadTTL, reasonSigningFailed,
	string(ca.CSRTooLarge), string(ca.CSRMalformed), string(ca.CSRBadSignature), string(ca.CSRUnsupportedKey),
	string(ca.CSRNoURISAN), string(ca.CSRSeveralSANs), string(ca.CSRNonURISAN), string(ca.CSRBadSPIFFEID),
}

type metrics struct {
	issued  prometheus.Counter
	refused *prometheus.CounterVec
	// Trust bundle watch streams: bundles sent, versions acknowledged,
	// bundles an agent could not apply.
	pushes      prometheus.Counter
	acks        prometheus.Counter
	applyErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, current func() *ca.CA, agents *Agents) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_certificates_issued_total",
			Help: "Workload certificates issued by the certificate service.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ca_certificate_refusals_total",
			Help: "Requests to the certificate service (certificates and trust bundle watches) refused, by reason.",
		}, []string{"reason"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_trust_bundle_pushes_total",
			Help: "Trust bundles sent to agents on WatchTrustBundle streams.",
		}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_trust_bundle_acks_total",
			Help: "Trust bundle versions agents acknowledged as applied.",
		}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_trust_bundle_apply_errors_total",
			Help: "Trust bundles agents reported they could not apply.",
		}),
	}
	for _, r := range allReasons {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.issued, m.refused, m.pushes, m.acks, m.applyErrors,
		expiryCollector{current}, bundleCollector{current, agents}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("certificate service metrics: %w", err)
		}
	}
	return m, nil
}

var (
	rootExpiryDesc = prometheus.NewDesc("sluice_ca_root_expiry_timestamp_seconds",
		"When each root of the trust bundle expires, as a Unix time.", []string{"serial"}, nil)
	intermediateExpiryDesc = prometheus.NewDesc("sluice_ca_intermediate_expiry_timestamp_seconds",
		"When the signing intermediate expires, as a Unix time.", []string{"serial"}, nil)
)

// expiryCollector reports the expiry of the current CA's certificates; the
// serial label tells the roots apart during a rotation.
type expiryCollector struct{ current func() *ca.CA }

func (expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rootExpiryDesc
	ch <- intermediateExpiryDesc
}

func (e expiryCollector) Collect(ch chan<- prometheus.Metric) {
	c := e.current()
	if c == nil {
		return
	}
	m := c.Material()
	for _, r := range m.Roots {
		ch <- prometheus.MustNewConstMetric(rootExpiryDesc, prometheus.GaugeValue, float64(r.NotAfter.Unix()), r.SerialNumber.Text(16))
	}
	s := m.Signer()
	ch <- prometheus.MustNewConstMetric(intermediateExpiryDesc, prometheus.GaugeValue, float64(s.NotAfter.Unix()), s.SerialNumber.Text(16))
}

var (
	bundleVersionDesc = prometheus.NewDesc("sluice_ca_trust_bundle_version",
		"The version of the trust bundle this replica serves.", nil, nil)
	bundleAgentsDesc = prometheus.NewDesc("sluice_ca_trust_bundle_agents",
		"Agents watching the trust bundle on this replica.", nil, nil)
	bundleLaggingDesc = prometheus.NewDesc("sluice_ca_trust_bundle_lagging_agents",
		"Agents watching the trust bundle on this replica that have not applied the version it serves.", nil, nil)
)

// bundleCollector reports the trust bundle version and the agents holding
// it, computed at scrape time.
type bundleCollector struct {
	current func() *ca.CA
	agents  *Agents
}

func (bundleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bundleVersionDesc
	ch <- bundleAgentsDesc
	ch <- bundleLaggingDesc
}

func (b bundleCollector) Collect(ch chan<- prometheus.Metric) {
	c := b.current()
	if c == nil {
		return
	}
	v := c.TrustBundleVersion()
	all := b.agents.List()
	lagging := 0
	for _, a := range all {
		if a.AppliedVersion != v {
			lagging++
		}
	}
	ch <- prometheus.MustNewConstMetric(bundleVersionDesc, prometheus.GaugeValue, float64(v))
	ch <- prometheus.MustNewConstMetric(bundleAgentsDesc, prometheus.GaugeValue, float64(len(all)))
	ch <- prometheus.MustNewConstMetric(bundleLaggingDesc, prometheus.GaugeValue, float64(lagging))
}
