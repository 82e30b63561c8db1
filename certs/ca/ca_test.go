package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/certs/identity"
)

func TestGenerate(t *testing.T) {
	m := newTestMaterial(t)
	require.NoError(t, m.Validate(t0))

	root, inter := m.Roots[0], m.Signer()
	for _, c := range []*x509.Certificate{root, inter} {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		require.True(t, ok, "ECDSA key")
		assert.Equal(t, elliptic.P256(), pub.Curve)
		assert.True(t, c.IsCA)
		assert.NotZero(t, c.KeyUsage&x509.KeyUsageCertSign)
		assert.Equal(t, t0.Add(-DefaultBackdate), c.NotBefore)
	}
	assert.Equal(t, t0.Add(DefaultRootTTL), root.NotAfter)
	assert.Equal(t, t0.Add(DefaultIntermediateTTL), inter.NotAfter)
	assert.Equal(t, root.Subject.String(), root.Issuer.String(), "self-signed root")
	assert.NoError(t, root.CheckSignatureFrom(root))
	assert.NoError(t, inter.CheckSignatureFrom(root))
	assert.True(t, inter.MaxPathLenZero, "the intermediate signs only leaves")

	assert.Error(t, m.Validate(t0.Add(DefaultIntermediateTTL+time.Hour)), "an expired intermediate cannot sign")
}

func TestIssueLeaf(t *testing.T) {
	c := newTestCA(t, fixed(t0))
	key := newKey(t)
	id := identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}

	iss, err := c.IssueLeaf(LeafRequest{PublicKey: key.Public(), ID: id, TTL: 24 * time.Hour})
	require.NoError(t, err)
	leaf := iss.Certificate

	require.Len(t, leaf.URIs, 1)
	assert.Equal(t, id.String(), leaf.URIs[0].String())
	assert.Empty(t, leaf.DNSNames)
	assert.Empty(t, leaf.IPAddresses)
	assert.Empty(t, leaf.EmailAddresses)
	assert.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	assert.False(t, leaf.IsCA)
	assert.Equal(t, t0.Add(-5*time.Minute), leaf.NotBefore, "backdated for clock skew")
	assert.Equal(t, t0.Add(24*time.Hour), leaf.NotAfter)
	assert.True(t, key.PublicKey.Equal(leaf.PublicKey))

	// The PEM chain is leaf, intermediate; it verifies to the bundle's root
	// for both client and server use.
	chain, err := ParseCertificates(iss.ChainPEM)
	require.NoError(t, err)
	require.Len(t, chain, 2)
	assert.Equal(t, leaf.Raw, chain[0].Raw)
	assert.Equal(t, c.Material().Signer().Raw, chain[1].Raw)
	roots, err := ParseCertificates(iss.TrustBundlePEM)
	require.NoError(t, err)
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		verified, err := chain[0].Verify(x509.VerifyOptions{
			Roots:         rootPool,
			Intermediates: pool(chain[1:]),
			CurrentTime:   t0,
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		require.NoError(t, err)
		require.Len(t, verified[0], 3, "leaf → intermediate → root")
	}

	// A certificate from another CA does not verify against this bundle.
	other := newTestCA(t, fixed(t0))
	foreign, err := other.IssueLeaf(LeafRequest{PublicKey: key.Public(), ID: id, TTL: time.Hour})
	require.NoError(t, err)
	_, err = foreign.Certificate.Verify(x509.VerifyOptions{Roots: c.Roots(), CurrentTime: t0, Intermediates: pool(other.Material().Intermediates)})
	assert.Error(t, err)
}

func TestLeafNeverOutlivesIntermediate(t *testing.T) {
	now := t0.Add(DefaultIntermediateTTL - time.Hour)
	c := newTestCA(t, fixed(now))
	iss, err := c.IssueLeaf(LeafRequest{
		PublicKey: newKey(t).Public(),
		ID:        identity.ID{TrustDomain: "cluster.local", Namespace: "a", ServiceAccount: "b"},
		TTL:       24 * time.Hour,
	})
	require.NoError(t, err)
	assert.Equal(t, c.Material().Signer().NotAfter, iss.Certificate.NotAfter)
}

func TestIssueLeafRefusesBadRequests(t *testing.T) {
	c := newTestCA(t, fixed(t0))
	good := identity.ID{TrustDomain: "cluster.local", Namespace: "a", ServiceAccount: "b"}
	_, err := c.IssueLeaf(LeafRequest{PublicKey: newKey(t).Public(), ID: identity.ID{TrustDomain: "x", Namespace: "A!"}, TTL: time.Hour})
	assert.Error(t, err, "invalid identity")
	_, err = c.IssueLeaf(LeafRequest{PublicKey: newKey(t).Public(), ID: good, TTL: 0})
	assert.Error(t, err, "zero TTL")
	_, err = c.IssueLeaf(LeafRequest{ID: good, TTL: time.Hour})
	assert.Error(t, err, "no key")
}

func TestIssueServing(t *testing.T) {
	c := newTestCA(t, fixed(t0))
	id := identity.ID{TrustDomain: "cluster.local", Namespace: "sluice-system", ServiceAccount: "sluice"}
	iss, err := c.IssueServing(newKey(t).Public(), []string{"sluice.sluice-system.svc", "localhost"}, id, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, []string{"sluice.sluice-system.svc", "localhost"}, iss.Certificate.DNSNames)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, iss.Certificate.ExtKeyUsage)
	_, err = iss.Certificate.Verify(x509.VerifyOptions{
		DNSName: "sluice.sluice-system.svc", Roots: c.Roots(), Intermediates: pool(c.Material().Intermediates), CurrentTime: t0,
	})
	assert.NoError(t, err)

	_, err = c.IssueServing(newKey(t).Public(), nil, id, time.Hour)
	assert.Error(t, err)
}

func TestNewRefusesMismatchedMaterial(t *testing.T) {
	a, b := newTestMaterial(t), newTestMaterial(t)

	wrongKey := *a
	wrongKey.IntermediateKey = b.IntermediateKey
	_, err := New(&wrongKey, Options{Now: fixed(t0)})
	assert.ErrorContains(t, err, "intermediate key does not match")

	wrongRoot := *a
	wrongRoot.Roots = b.Roots
	wrongRoot.RootKey = nil
	_, err = New(&wrongRoot, Options{Now: fixed(t0)})
	assert.ErrorContains(t, err, "does not chain")

	wrongRootKey := *a
	wrongRootKey.RootKey = b.RootKey
	_, err = New(&wrongRootKey, Options{Now: fixed(t0)})
	assert.ErrorContains(t, err, "root key matches none")

	leafAsCA := *a
	leafAsCA.Intermediates = []*x509.Certificate{a.Roots[0]}
	leafAsCA.IntermediateKey = a.RootKey
	_, err = New(&leafAsCA, Options{Now: fixed(t0)})
	assert.NoError(t, err, "a root may sign directly (operator's choice)")
}

func TestFilesRoundTrip(t *testing.T) {
	m := newTestMaterial(t)
	files, err := m.Files()
	require.NoError(t, err)
	back, err := ParseFiles(files)
	require.NoError(t, err)
	require.NoError(t, back.Validate(t0))
	assert.Equal(t, m.Roots[0].Raw, back.Roots[0].Raw)
	assert.Equal(t, m.Signer().Raw, back.Signer().Raw)
	assert.True(t, m.RootKey.Public().(*ecdsa.PublicKey).Equal(back.RootKey.Public()))

	// kubernetes.io/tls layout, root key kept offline.
	tlsFiles := map[string][]byte{"tls.crt": files[FileIntermediateCert], "tls.key": files[FileIntermediateKey], "ca.crt": files[FileRootCert]}
	back, err = ParseFiles(tlsFiles)
	require.NoError(t, err)
	require.NoError(t, back.Validate(t0))
	assert.Nil(t, back.RootKey)

	delete(files, FileIntermediateKey)
	_, err = ParseFiles(files)
	assert.ErrorContains(t, err, "intermediate.key is missing")
}
