package bootstrap

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
)

func TestWithCertificateProviders(t *testing.T) {
	base, err := GRPC(Workload{Pod: "cart-1", Namespace: "shop", XDSAddress: "sluice.sluice-system.svc:15010"})
	require.NoError(t, err)
	out, err := WithCertificateProviders(base, CertificateFiles{
		CertificateFile:   "/var/run/sluice/certs/cert-chain.pem",
		PrivateKeyFile:    "/var/run/sluice/certs/key.pem",
		CACertificateFile: "/var/run/sluice/certs/root-cert.pem",
		RefreshInterval:   1500 * time.Millisecond,
	})
	require.NoError(t, err)

	var got map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(out, &got))
	var orig map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(base, &orig))
	for k, v := range orig {
		if k == "node" {
			continue
		}
		assert.JSONEq(t, string(v), string(got[k]), "field %s kept", k)
	}
	// The node keeps its id and metadata and says the client can do mTLS.
	var node struct {
		ID       string            `json:"id"`
		Metadata map[string]string `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(got["node"], &node))
	assert.Equal(t, "cart-1.shop", node.ID)
	assert.Equal(t, map[string]string{MetaProxyKind: "grpc", MetaNamespace: "shop", MetaPodName: "cart-1", MetaMTLS: "true"}, node.Metadata)
	assert.JSONEq(t, `{"sluice": {"plugin_name": "file_watcher", "config": {
		"certificate_file": "/var/run/sluice/certs/cert-chain.pem",
		"private_key_file": "/var/run/sluice/certs/key.pem",
		"ca_certificate_file": "/var/run/sluice/certs/root-cert.pem",
		"refresh_interval": "1.5s"}}}`, string(got["certificate_providers"]))

	// grpc-go's own file_watcher plugin accepts the config.
	var providers map[string]struct {
		PluginName string          `json:"plugin_name"`
		Config     json.RawMessage `json:"config"`
	}
	require.NoError(t, json.Unmarshal(got["certificate_providers"], &providers))
	p := providers[CertificateProviderInstance]
	require.Equal(t, pemfile.PluginName, p.PluginName)
	cfg, err := certprovider.GetProvider(p.PluginName, p.Config, certprovider.BuildOptions{WantIdentity: true, WantRoot: true})
	require.NoError(t, err)
	cfg.Close()
}

func TestWithCertificateProvidersNeedsAllFiles(t *testing.T) {
	_, err := WithCertificateProviders([]byte(`{}`), CertificateFiles{CertificateFile: "a", PrivateKeyFile: "b"})
	assert.Error(t, err)
	_, err = WithCertificateProviders([]byte(`not json`), CertificateFiles{CertificateFile: "a", PrivateKeyFile: "b", CACertificateFile: "c"})
	assert.Error(t, err)
}
