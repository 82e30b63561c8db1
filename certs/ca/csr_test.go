package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const cartID = "spiffe://cluster.local/ns/shop/sa/cart"

func TestParseCSRAcceptsOneSPIFFEURI(t *testing.T) {
	key := newKey(t)
	csr, id, err := ParseCSR(csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, cartID)}}), 8<<10)
	require.NoError(t, err)
	assert.Equal(t, cartID, id.String())
	assert.True(t, key.PublicKey.Equal(csr.PublicKey))
}

func TestParseCSRProblems(t *testing.T) {
	key := newKey(t)
	uri := []*url.URL{mustURL(t, cartID)}
	good := csrPEM(t, key, &x509.CertificateRequest{URIs: uri})

	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		pem  []byte
		want CSRProblem
	}{
		"too large":       {append(bytes.Repeat([]byte(" "), 9<<10), good...), CSRTooLarge},
		"garbage":         {[]byte("hello, CA"), CSRMalformed},
		"empty":           {nil, CSRMalformed},
		"certificate":     {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), CSRMalformed},
		"bad DER":         {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 3, 1, 2, 3}}), CSRMalformed},
		"two blocks":      {append(append([]byte{}, good...), good...), CSRMalformed},
		"bad signature":   {tamperSignature(t, good), CSRBadSignature},
		"P-224 key":       {csrPEM(t, p224, &x509.CertificateRequest{URIs: uri}), CSRUnsupportedKey},
		"ed25519 key":     {csrPEM(t, edKey, &x509.CertificateRequest{URIs: uri}), CSRUnsupportedKey},
		"no SAN":          {csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "cart"}}), CSRNoURISAN},
		"two URIs":        {csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{uri[0], mustURL(t, "spiffe://cluster.local/ns/shop/sa/admin")}}), CSRSeveralSANs},
		"URI and DNS":     {csrPEM(t, key, &x509.CertificateRequest{URIs: uri, DNSNames: []string{"cart.shop.svc"}}), CSRNonURISAN},
		"DNS only":        {csrPEM(t, key, &x509.CertificateRequest{DNSNames: []string{"cart.shop.svc"}}), CSRNonURISAN},
		"IP":              {csrPEM(t, key, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}), CSRNonURISAN},
		"email":           {csrPEM(t, key, &x509.CertificateRequest{EmailAddresses: []string{"cart@shop"}}), CSRNonURISAN},
		"hidden SAN type": {csrPEM(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{sanWithRegisteredID(t, cartID)}}), CSRSeveralSANs},
		"not SPIFFE":      {csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "https://cart.shop")}}), CSRBadSPIFFEID},
		"other path":      {csrPEM(t, key, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://cluster.local/workload/cart")}}), CSRBadSPIFFEID},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseCSR(tc.pem, 8<<10)
			var ce *CSRError
			require.True(t, errors.As(err, &ce), "want a *CSRError, got %v", err)
			assert.Equal(t, tc.want, ce.Problem, ce.Error())
			assert.NotEmpty(t, ce.Detail)
		})
	}
}

// tamperSignature flips a bit in the CSR's signature.
func tamperSignature(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	der := append([]byte{}, b.Bytes...)
	der[len(der)-1] ^= 0x01
	return pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: der})
}

// sanWithRegisteredID is a SAN extension with the URI and a registeredID,
// a name type Go's parser silently skips.
func sanWithRegisteredID(t *testing.T, uri string) pkix.Extension {
	t.Helper()
	oid, err := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 3, 4})
	require.NoError(t, err)
	var oidValue asn1.RawValue
	_, err = asn1.Unmarshal(oid, &oidValue)
	require.NoError(t, err)
	names := []asn1.RawValue{
		{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)},
		{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: oidValue.Bytes},
	}
	val, err := asn1.Marshal(names)
	require.NoError(t, err)
	return pkix.Extension{Id: oidSubjectAltName, Value: val}
}
