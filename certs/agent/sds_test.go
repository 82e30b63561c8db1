package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-mesh/sluice/certs/wellknown"
)

// An SDS client on the Unix socket (as Envoy would be) waits for the first
// certificate, gets both secrets, and gets the renewed certificate pushed.
func TestSDSOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sds", "sds.sock")
	lis, err := ListenUnix(sock)
	require.NoError(t, err)
	sds := NewSDSServer(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sds.Serve(ctx, lis) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	stream, err := secretservice.NewSecretDiscoveryServiceClient(conn).StreamSecrets(sctx)
	require.NoError(t, err)
	req := &discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: "cart-1.shop"},
		TypeUrl:       resourcev3.SecretType,
		ResourceNames: []string{wellknown.SDSCertificate, wellknown.SDSTrustBundle},
	}
	require.NoError(t, stream.Send(req))

	c := newCA(t, time.Now)
	first := issue(t, c, testID("cart"), time.Now())
	require.NoError(t, sds.Publish(ctx, first))
	resp, err := stream.Recv()
	require.NoError(t, err)
	assertSecrets(t, first, resp)

	// ACK, then renew: the new certificate is pushed on the same stream.
	req.VersionInfo, req.ResponseNonce = resp.VersionInfo, resp.Nonce
	require.NoError(t, stream.Send(req))
	second := issue(t, c, testID("cart"), time.Now())
	require.NoError(t, sds.Publish(ctx, second))
	resp2, err := stream.Recv()
	require.NoError(t, err)
	assert.NotEqual(t, resp.VersionInfo, resp2.VersionInfo)
	assertSecrets(t, second, resp2)

	// A fresh Fetch gets the current one too.
	fetched, err := secretservice.NewSecretDiscoveryServiceClient(conn).FetchSecrets(sctx, &discoveryv3.DiscoveryRequest{
		Node: &corev3.Node{Id: "other"}, TypeUrl: resourcev3.SecretType, ResourceNames: []string{wellknown.SDSCertificate, wellknown.SDSTrustBundle},
	})
	require.NoError(t, err)
	assertSecrets(t, second, fetched)
}

func TestListenUnixReplacesStaleSocketOnly(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sds.sock")
	lis, err := ListenUnix(sock)
	require.NoError(t, err)
	// A crashed agent leaves its socket behind (closing a Go unix listener
	// removes it, so simulate by keeping it and listening again).
	lis2, err := ListenUnix(sock)
	require.NoError(t, err)
	lis2.Close()
	lis.Close()

	notSocket := filepath.Join(t.TempDir(), "file")
	require.NoError(t, writeFile(notSocket))
	_, err = ListenUnix(notSocket)
	assert.ErrorContains(t, err, "not a socket")
}

func assertSecrets(t *testing.T, want *Credentials, resp *discoveryv3.DiscoveryResponse) {
	t.Helper()
	require.Equal(t, resourcev3.SecretType, resp.TypeUrl)
	got := map[string]*tlsv3.Secret{}
	for _, r := range resp.Resources {
		var s tlsv3.Secret
		require.NoError(t, r.UnmarshalTo(&s))
		got[s.Name] = &s
	}
	require.Len(t, got, 2)
	tc := got[wellknown.SDSCertificate].GetTlsCertificate()
	require.NotNil(t, tc)
	assert.Equal(t, want.ChainPEM, tc.CertificateChain.GetInlineBytes())
	assert.Equal(t, want.KeyPEM, tc.PrivateKey.GetInlineBytes())
	vc := got[wellknown.SDSTrustBundle].GetValidationContext()
	require.NotNil(t, vc)
	assert.Equal(t, want.TrustBundlePEM, vc.TrustedCa.GetInlineBytes())
}
