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
}

func newMetrics(reg prometheus.Registerer, current func() *ca.CA) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_certificates_issued_total",
			Help: "Workload certificates issued by the certificate service.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ca_certificate_refusals_total",
			Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range allReasons {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.issued, m.refused, expiryCollector{current}} {
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
