package agent

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
)

// Credentials are a workload's certificate, key and trust bundle. They are
// immutable.
type Credentials struct {
	ID identity.ID
	// ChainPEM is the certificate then the intermediates.
	ChainPEM []byte
	// KeyPEM is the private key, PKCS #8.
	KeyPEM []byte
	// TrustBundlePEM is the roots; TrustBundleVersion the CA's number for
	// them.
	TrustBundlePEM     []byte
	TrustBundleVersion uint64
	// Leaf is the parsed certificate.
	Leaf *x509.Certificate
	// Certificate is ChainPEM and KeyPEM for crypto/tls.
	Certificate tls.Certificate
	// Roots is TrustBundlePEM as a pool.
	Roots *x509.CertPool

	// intermediates are the chain's certificates after the leaf.
	intermediates []*x509.Certificate
}

// TrustBundle is the mesh's roots with the version the CA numbered them
// with.
type TrustBundle struct {
	Version uint64
	PEM     []byte
}

// String describes c without the key.
func (c *Credentials) String() string {
	return fmt.Sprintf("credentials{%s, serial %s, valid %s to %s, key %s}", c.ID, c.Leaf.SerialNumber.Text(16),
		c.Leaf.NotBefore.UTC().Format(time.RFC3339), c.Leaf.NotAfter.UTC().Format(time.RFC3339), ca.Redacted)
}

// newKeyAndCSR makes a fresh ECDSA P-256 key and a CSR for id.
func newKeyAndCSR(id identity.ID) (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// newCredentials checks what the CA sent before it is used: the chain is
// for our key and our ID, and verifies to the bundle now.
func newCredentials(id identity.ID, key crypto.Signer, chainPEM []byte, bundle TrustBundle, now time.Time) (*Credentials, error) {
	chain, err := ca.ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	roots, err := parseBundle(bundle.PEM)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the certificate is not for our key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		return nil, fmt.Errorf("the certificate is for %v, not %s", leaf.URIs, id)
	}
	if err := verifyLeaf(leaf, chain[1:], roots, now); err != nil {
		return nil, fmt.Errorf("the certificate does not verify to the trust bundle (version %d): %w", bundle.Version, err)
	}
	keyPEM, err := ca.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	// Normalize the chain to exactly the parsed certificates.
	chainPEM = ca.EncodeCertificates(chain...)
	cert, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	cert.Leaf = leaf
	return &Credentials{
		ID: id, ChainPEM: chainPEM, KeyPEM: keyPEM, TrustBundlePEM: bytes.Clone(bundle.PEM), TrustBundleVersion: bundle.Version,
		Leaf: leaf, Certificate: cert, Roots: roots, intermediates: chain[1:],
	}, nil
}

// withTrustBundle returns c with another trust bundle: same certificate
// and key.
func (c *Credentials) withTrustBundle(b TrustBundle) (*Credentials, error) {
	roots, err := parseBundle(b.PEM)
	if err != nil {
		return nil, err
	}
	next := *c
	next.TrustBundlePEM, next.TrustBundleVersion, next.Roots = bytes.Clone(b.PEM), b.Version, roots
	return &next, nil
}

// hasBundle says whether c's trust bundle is b.
func (c *Credentials) hasBundle(b TrustBundle) bool {
	return c.TrustBundleVersion == b.Version && bytes.Equal(c.TrustBundlePEM, b.PEM)
}

// verifies says whether c's certificate verifies to c's trust bundle at now.
func (c *Credentials) verifies(now time.Time) bool {
	return verifyLeaf(c.Leaf, c.intermediates, c.Roots, now) == nil
}

func verifyLeaf(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	return err
}

// parseBundle parses a PEM trust bundle: certificates only, at least one.
func parseBundle(pemData []byte) (*x509.CertPool, error) {
	certs, err := ca.ParseCertificates(pemData)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	roots := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("trust bundle: %q is not a CA certificate", c.Subject)
		}
		roots.AddCert(c)
	}
	return roots, nil
}
