package service

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	certsv1 "github.com/sluice-mesh/sluice/certs/api/v1"
	"github.com/sluice-mesh/sluice/certs/authn"
	"github.com/sluice-mesh/sluice/certs/authn/authntest"
	"github.com/sluice-mesh/sluice/certs/ca"
)

const servingName = "sluice.sluice-system.svc"

var testTokens = map[string]authntest.Token{
	"tok-cart":    {Namespace: "shop", ServiceAccount: "cart", Pod: "cart-1", Audiences: []string{"sluice"}},
	"tok-web":     {Namespace: "shop", ServiceAccount: "web", Audiences: []string{"sluice"}},
	"tok-expired": {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"sluice"}, Expired: true},
	"tok-vault":   {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"vault"}},
	"tok-default": {Namespace: "shop", ServiceAccount: "cart"},
	"tok-alice":   {User: "alice", Audiences: []string{"sluice"}},
}

type harness struct {
	svc    *Service
	ca     *ca.CA
	reg    *prometheus.Registry
	client certsv1.CertificateServiceClient
	logs   *syncBuffer
	k8s    interface {
		PrependReactor(verb, resource string, fn k8stesting.ReactionFunc)
	}
}

// newHarness serves the real service on loopback TLS, with the TokenReview
// authenticator talking to a fake API server.
func newHarness(t *testing.T, tune func(*Options)) *harness {
	t.Helper()
	m, err := ca.Generate(ca.GenerateOptions{TrustDomain: "cluster.local", Now: time.Now()})
	require.NoError(t, err)
	c, err := ca.New(m, ca.Options{})
	require.NoError(t, err)
	k8s := authntest.NewClientset(testTokens)
	h := &harness{ca: c, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, k8s: k8s}
	opts := Options{
		CA:              func() *ca.CA { return c },
		Authenticator:   authn.NewTokenReview(k8s, "sluice"),
		ServingDNSNames: []string{servingName},
		Registerer:      h.reg,
		Log:             slog.New(slog.NewTextHandler(h.logs, nil)),
	}
	if tune != nil {
		tune(&opts)
	}
	svc, err := New(opts)
	require.NoError(t, err)
	h.svc = svc

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: c.Roots(), ServerName: servingName, MinVersion: tls.VersionTLS12,
	})))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.client = certsv1.NewCertificateServiceClient(conn)
	return h
}

func (h *harness) call(token string, csr []byte, ttl *durationpb.Duration) (*certsv1.CreateCertificateResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", token)
	}
	return h.client.CreateCertificate(ctx, &certsv1.CreateCertificateRequest{Csr: csr, Ttl: ttl})
}

func TestIssuesCertificateForTheCallersIdentity(t *testing.T) {
	h := newHarness(t, nil)
	key := newKey(t)
	resp, err := h.call("Bearer tok-cart", csrFor(t, key, "spiffe://cluster.local/ns/shop/sa/cart"), nil)
	require.NoError(t, err)

	chain, err := ca.ParseCertificates(resp.CertificateChain)
	require.NoError(t, err)
	require.Len(t, chain, 2)
	leaf := chain[0]
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", leaf.URIs[0].String())
	assert.True(t, key.PublicKey.Equal(leaf.PublicKey))
	assert.InDelta(t, 24*time.Hour+5*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore), float64(time.Minute), "default TTL")
	assert.Equal(t, h.ca.TrustBundlePEM(), resp.TrustBundle)

	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(resp.TrustBundle))
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	assert.Equal(t, 1.0, testutil.ToFloat64(h.svc.metrics.issued))
	assert.NotContains(t, h.logs.String(), "tok-cart", "tokens are never logged")
}

func TestTTLIsCapped(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DefaultTTL = time.Hour; o.MaxTTL = 2 * time.Hour; o.MinTTL = 10 * time.Minute })
	for asked, want := range map[time.Duration]time.Duration{
		0:                time.Hour,
		90 * time.Minute: 90 * time.Minute,
		48 * time.Hour:   2 * time.Hour,
		time.Second:      10 * time.Minute,
	} {
		resp, err := h.call("Bearer tok-cart", csrFor(t, newKey(t), "spiffe://cluster.local/ns/shop/sa/cart"), durationpb.New(asked))
		require.NoError(t, err, asked)
		chain, err := ca.ParseCertificates(resp.CertificateChain)
		require.NoError(t, err)
		assert.InDelta(t, float64(want+ca.DefaultBackdate), float64(chain[0].NotAfter.Sub(chain[0].NotBefore)), float64(time.Minute), "asked %s", asked)
	}
}

// Every bad input gets its own code and a message saying what is wrong, is
// counted under its reason, and gets no certificate.
func TestRefusals(t *testing.T) {
	h := newHarness(t, nil)
	key := newKey(t)
	cart := "spiffe://cluster.local/ns/shop/sa/cart"
	good := csrFor(t, key, cart)
	bigCSR := append(bytes.Repeat([]byte("#"), 9<<10), good...)

	for _, tc := range []struct {
		name   string
		token  string
		csr    []byte
		ttl    *durationpb.Duration
		code   codes.Code
		msg    string
		reason string
	}{
		{"no token", "", good, nil, codes.Unauthenticated, "no bearer token", reasonNoToken},
		{"not bearer", "Basic tok-cart", good, nil, codes.Unauthenticated, "not 'Bearer <token>'", reasonNoToken},
		{"empty bearer", "Bearer ", good, nil, codes.Unauthenticated, "token is empty", reasonNoToken},
		{"unknown token", "Bearer nope", good, nil, codes.Unauthenticated, "invalid bearer token", reasonBadToken},
		{"expired token", "Bearer tok-expired", good, nil, codes.Unauthenticated, "expired", reasonBadToken},
		{"token for another audience", "Bearer tok-vault", good, nil, codes.Unauthenticated, "audiences", reasonBadToken},
		{"token for the API server", "Bearer tok-default", good, nil, codes.Unauthenticated, "audiences", reasonBadToken},
		{"user token", "Bearer tok-alice", good, nil, codes.PermissionDenied, "service accounts", reasonNotSA},
		{"garbage CSR", "Bearer tok-cart", []byte("garbage"), nil, codes.InvalidArgument, "no PEM block", string(ca.CSRMalformed)},
		{"empty CSR", "Bearer tok-cart", nil, nil, codes.InvalidArgument, "no PEM block", string(ca.CSRMalformed)},
		{"oversized CSR", "Bearer tok-cart", bigCSR, nil, codes.InvalidArgument, "the limit is 8192", string(ca.CSRTooLarge)},
		{"bad signature", "Bearer tok-cart", tamper(good), nil, codes.InvalidArgument, "signature", string(ca.CSRBadSignature)},
		{"wrong SAN", "Bearer tok-web", good, nil, codes.PermissionDenied, "the token is service account shop/web's; the CSR asks for " + cart, reasonIdentityMismatch},
		{"other namespace", "Bearer tok-cart", csrFor(t, key, "spiffe://cluster.local/ns/bank/sa/cart"), nil, codes.PermissionDenied, "asks for spiffe://cluster.local/ns/bank/sa/cart", reasonIdentityMismatch},
		{"other trust domain", "Bearer tok-cart", csrFor(t, key, "spiffe://evil.org/ns/shop/sa/cart"), nil, codes.PermissionDenied, `trust domain "evil.org"`, reasonWrongTrustDomain},
		{"several SANs", "Bearer tok-cart", csrFor(t, key, cart, "spiffe://cluster.local/ns/shop/sa/web"), nil, codes.InvalidArgument, "2 SANs", string(ca.CSRSeveralSANs)},
		{"DNS SAN", "Bearer tok-cart", csrWith(t, key, &x509.CertificateRequest{URIs: urls(t, cart), DNSNames: []string{"cart.shop.svc"}}), nil, codes.InvalidArgument, "DNS, IP or email", string(ca.CSRNonURISAN)},
		{"IP SAN", "Bearer tok-cart", csrWith(t, key, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), nil, codes.InvalidArgument, "DNS, IP or email", string(ca.CSRNonURISAN)},
		{"email SAN", "Bearer tok-cart", csrWith(t, key, &x509.CertificateRequest{EmailAddresses: []string{"a@b"}}), nil, codes.InvalidArgument, "DNS, IP or email", string(ca.CSRNonURISAN)},
		{"no SAN", "Bearer tok-cart", csrWith(t, key, &x509.CertificateRequest{}), nil, codes.InvalidArgument, "no SAN", string(ca.CSRNoURISAN)},
		{"not a SPIFFE ID", "Bearer tok-cart", csrFor(t, key, "https://cart.shop"), nil, codes.InvalidArgument, "not a SPIFFE ID", string(ca.CSRBadSPIFFEID)},
		{"negative TTL", "Bearer tok-cart", good, durationpb.New(-time.Hour), codes.InvalidArgument, "negative", reasonBadTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(refusals(h, tc.reason))
			resp, err := h.call(tc.token, tc.csr, tc.ttl)
			assert.Nil(t, resp)
			st, _ := status.FromError(err)
			assert.Equal(t, tc.code, st.Code(), st.Message())
			assert.Contains(t, st.Message(), tc.msg)
			assert.Equal(t, before+1, testutil.ToFloat64(refusals(h, tc.reason)), "counted as %s", tc.reason)
		})
	}
	assert.Zero(t, testutil.ToFloat64(h.svc.metrics.issued), "nothing issued")

	// A message far over the CSR limit is cut by gRPC before it is read.
	_, err := h.call("Bearer tok-cart", bytes.Repeat([]byte("x"), 1<<20), nil)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
}

func TestRateLimitPerIdentity(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Rate = rate.Every(time.Hour); o.Burst = 2 })
	cart := csrFor(t, newKey(t), "spiffe://cluster.local/ns/shop/sa/cart")
	for range 2 {
		_, err := h.call("Bearer tok-cart", cart, nil)
		require.NoError(t, err)
	}
	_, err := h.call("Bearer tok-cart", cart, nil)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "shop/cart")
	assert.Equal(t, 1.0, testutil.ToFloat64(refusals(h, reasonRateLimited)))

	// Another identity has its own bucket.
	_, err = h.call("Bearer tok-web", csrFor(t, newKey(t), "spiffe://cluster.local/ns/shop/sa/web"), nil)
	assert.NoError(t, err)
}

func TestTokenReviewDownIsUnavailable(t *testing.T) {
	h := newHarness(t, nil)
	h.k8s.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("dial tcp: connection refused")
	})
	_, err := h.call("Bearer tok-cart", csrFor(t, newKey(t), "spiffe://cluster.local/ns/shop/sa/cart"), nil)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.NotContains(t, status.Convert(err).Message(), "dial tcp", "internal errors stay in the logs")
}

func TestMetricsAndDebugShowNoKeys(t *testing.T) {
	h := newHarness(t, nil)
	n, err := testutil.GatherAndCount(h.reg, "sluice_ca_root_expiry_timestamp_seconds", "sluice_ca_intermediate_expiry_timestamp_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	root := h.ca.Material().Roots[0]
	want := strings.NewReader(`
# HELP sluice_ca_root_expiry_timestamp_seconds When each root of the trust bundle expires, as a Unix time.
# TYPE sluice_ca_root_expiry_timestamp_seconds gauge
sluice_ca_root_expiry_timestamp_seconds{serial="` + root.SerialNumber.Text(16) + `"} ` + strconv.FormatInt(root.NotAfter.Unix(), 10) + "\n")
	assert.NoError(t, testutil.GatherAndCompare(h.reg, want, "sluice_ca_root_expiry_timestamp_seconds"))

	svc, err := New(Options{CA: func() *ca.CA { return h.ca }, Authenticator: authn.AuthenticatorFunc(nil), ServingDNSNames: []string{"x"}})
	require.NoError(t, err)
	out, err := json.Marshal(svc.Debug())
	require.NoError(t, err)
	assert.Contains(t, string(out), ca.Redacted)
	assert.NotContains(t, string(out), "PRIVATE KEY")
}

func refusals(h *harness, reason string) prometheus.Collector {
	return h.svc.metrics.refused.WithLabelValues(reason)
}

// --- helpers ---

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func urls(t *testing.T, ss ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		require.NoError(t, err)
		out = append(out, u)
	}
	return out
}

func csrFor(t *testing.T, key crypto.Signer, uris ...string) []byte {
	return csrWith(t, key, &x509.CertificateRequest{URIs: urls(t, uris...)})
}

func csrWith(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func tamper(p []byte) []byte {
	b, _ := pem.Decode(p)
	der := append([]byte{}, b.Bytes...)
	der[len(der)-1] ^= 1
	return pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: der})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
