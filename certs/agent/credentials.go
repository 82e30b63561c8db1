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
	// TrustBundlePEM is the roots.
	TrustBundlePEM []byte
	// Leaf is the parsed certificate.
	Leaf *x509.Certificate
	// Certificate is ChainPEM and KeyPEM for crypto/tls.
	Certificate tls.Certificate
	// Roots is TrustBundlePEM as a pool.
	Roots *x509.CertPool
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
func newCredentials(id identity.ID, key crypto.Signer, chainPEM, bundlePEM []byte, now time.Time) (*Credentials, error) {
	chain, err := ca.ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundlePEM) {
		return nil, errors.New("trust bundle: no certificate")
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the certificate is not for our key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		return nil, fmt.Errorf("the certificate is for %v, not %s", leaf.URIs, id)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the certificate does not verify to the trust bundle: %w", err)
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
		ID: id, ChainPEM: chainPEM, KeyPEM: keyPEM, TrustBundlePEM: bytes.Clone(bundlePEM),
		Leaf: leaf, Certificate: cert, Roots: roots,
	}, nil
}
