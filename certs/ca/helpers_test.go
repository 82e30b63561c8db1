package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestMaterial(t *testing.T) *Material {
	t.Helper()
	m, err := Generate(GenerateOptions{TrustDomain: "cluster.local", Now: t0})
	require.NoError(t, err)
	return m
}

func newTestCA(t *testing.T, now func() time.Time) *CA {
	t.Helper()
	c, err := New(newTestMaterial(t), Options{Now: now})
	require.NoError(t, err)
	return c
}

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// csrPEM signs a CSR for tmpl with key.
func csrPEM(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
