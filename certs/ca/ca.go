package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/sluice-mesh/sluice/certs/identity"
)

// Options tune a CA.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Backdate is how far before now certificates start; DefaultBackdate
	// when zero.
	Backdate time.Duration
	// BundleVersion numbers the trust bundle (the roots) so that agents can
	// acknowledge the bundle they hold; 1 when zero. It changes whenever
	// the roots do (see State.TrustBundleVersion).
	BundleVersion uint64
}

// CA signs certificates with an intermediate. It is immutable and safe for
// concurrent use; a rotation makes a new CA.
type CA struct {
	m         *Material
	now       func() time.Time
	backdate  time.Duration
	roots     *x509.CertPool
	bundlePEM []byte
	bundleVer uint64
	chainPEM  []byte // the intermediates, appended to every leaf
}

// New returns the CA signing with m's intermediate. m must be valid now.
func New(m *Material, opts Options) (*CA, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Backdate == 0 {
		opts.Backdate = DefaultBackdate
	}
	if opts.BundleVersion == 0 {
		opts.BundleVersion = 1
	}
	if err := m.Validate(opts.Now()); err != nil {
		return nil, err
	}
	return &CA{
		m:         m,
		now:       opts.Now,
		backdate:  opts.Backdate,
		roots:     m.rootPool(),
		bundlePEM: EncodeCertificates(m.Roots...),
		bundleVer: opts.BundleVersion,
		chainPEM:  EncodeCertificates(m.Intermediates...),
	}, nil
}

// Material is what the CA signs with. Do not modify it.
func (c *CA) Material() *Material { return c.m }

// TrustBundlePEM is the roots, PEM. Do not modify it.
func (c *CA) TrustBundlePEM() []byte { return c.bundlePEM }

// TrustBundleVersion numbers TrustBundlePEM.
func (c *CA) TrustBundleVersion() uint64 { return c.bundleVer }

// Roots is the trust bundle as a pool. Do not modify it.
func (c *CA) Roots() *x509.CertPool { return c.roots }

// Issued is a signed certificate with its chain and the trust bundle.
type Issued struct {
	Certificate *x509.Certificate
	// ChainPEM is the certificate then the intermediates, PEM (no root).
	ChainPEM []byte
	// TrustBundlePEM is the roots, PEM.
	TrustBundlePEM []byte
	// TrustBundleVersion numbers TrustBundlePEM.
	TrustBundleVersion uint64
}

// LeafRequest asks for a workload certificate.
type LeafRequest struct {
	// PublicKey is the workload's key, from its CSR.
	PublicKey crypto.PublicKey
	ID        identity.ID
	// TTL is the lifetime from now. It is cut to the intermediate's end.
	TTL time.Duration
}

// IssueLeaf signs a workload certificate: the SPIFFE ID as the only SAN (a
// URI), digitalSignature key usage, client and server auth, valid from a
// little before now for TTL. Nothing from the CSR but the public key is
// copied, so a CSR cannot ask for more.
func (c *CA) IssueLeaf(req LeafRequest) (*Issued, error) {
	if err := req.ID.Validate(); err != nil {
		return nil, fmt.Errorf("issuing leaf: %w", err)
	}
	return c.issue(req.PublicKey, req.TTL, &x509.Certificate{
		URIs:        []*url.URL{req.ID.URL()},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
}

// IssueServing signs a TLS server certificate for dnsNames (Sluice's own
// services), with id as a URI SAN too when it is not zero.
func (c *CA) IssueServing(pub crypto.PublicKey, dnsNames []string, id identity.ID, ttl time.Duration) (*Issued, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("issuing serving certificate: no DNS name")
	}
	tmpl := &x509.Certificate{
		DNSNames:    dnsNames,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if id != (identity.ID{}) {
		tmpl.URIs = []*url.URL{id.URL()}
	}
	return c.issue(pub, ttl, tmpl)
}

func (c *CA) issue(pub crypto.PublicKey, ttl time.Duration, tmpl *x509.Certificate) (*Issued, error) {
	if pub == nil {
		return nil, errors.New("issuing certificate: no public key")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("issuing certificate: lifetime %s is not positive", ttl)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := c.now()
	signer := c.m.Signer()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-c.backdate)
	if tmpl.NotBefore.Before(signer.NotBefore) {
		tmpl.NotBefore = signer.NotBefore
	}
	tmpl.NotAfter = now.Add(ttl)
	if tmpl.NotAfter.After(signer.NotAfter) {
		tmpl.NotAfter = signer.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, pub, c.m.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing signed certificate: %w", err)
	}
	chain := append(EncodeCertificates(cert), c.chainPEM...)
	return &Issued{Certificate: cert, ChainPEM: chain, TrustBundlePEM: c.bundlePEM, TrustBundleVersion: c.bundleVer}, nil
}
