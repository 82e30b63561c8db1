package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluice-mesh/sluice/certs/ca"
)

func parseCAFlags(t *testing.T, args ...string) caConfig {
	t.Helper()
	var c caConfig
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.addFlags(fs)
	require.NoError(t, fs.Parse(args))
	return c
}

func TestCAConfigValidate(t *testing.T) {
	assert.NoError(t, parseCAFlags(t).validate(false), "defaults with a cluster")
	assert.NoError(t, parseCAFlags(t).validate(true), "file source without tokens file: service off")
	assert.False(t, parseCAFlags(t).enabled(true))
	assert.False(t, parseCAFlags(t, "--ca-address=").enabled(false))

	for name, tc := range map[string]struct {
		args       []string
		fileSource bool
		want       string
	}{
		"tokens file without dir": {[]string{"--ca-tokens-file=t.yaml"}, true, "needs --ca-dir"},
		"tokens file in cluster":  {[]string{"--ca-tokens-file=t.yaml"}, false, "development with --config-dir only"},
		"short leaf":              {[]string{"--leaf-ttl=10s"}, false, "--leaf-ttl"},
		"max below default":       {[]string{"--leaf-ttl=2h", "--max-leaf-ttl=1h"}, false, "--max-leaf-ttl"},
		"bad trust domain":        {[]string{"--trust-domain=Example.COM"}, false, "--trust-domain"},
		"bad address":             {[]string{"--ca-address=15012"}, false, "--ca-address"},
		"no rate":                 {[]string{"--ca-rate=0"}, false, "--ca-rate"},
		"threshold":               {[]string{"--ca-rotation-threshold=1"}, false, "--ca-rotation-threshold"},
		"intermediate over root":  {[]string{"--ca-root-ttl=24h", "--ca-intermediate-ttl=48h"}, false, "--ca-intermediate-ttl"},
		"short bundle timeout":    {[]string{"--ca-bundle-timeout=5s"}, false, "--ca-bundle-timeout"},
	} {
		err := parseCAFlags(t, tc.args...).validate(tc.fileSource)
		assert.ErrorContains(t, err, tc.want, name)
	}
}

// With a cluster the CA goes into a Secret in Sluice's namespace, and a
// restart uses it again.
func TestCertificateServiceKeepsCAInSecret(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	cfg := parseCAFlags(t, "--namespace=mesh-system")
	log := slog.New(slog.DiscardHandler)

	svc, err := newCertificateService(ctx, cfg, client, prometheus.NewRegistry(), log)
	require.NoError(t, err)
	require.NotNil(t, svc)
	sec, err := client.CoreV1().Secrets("mesh-system").Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	info := svc.Debug().(caDebug).Service
	assert.Equal(t, []string{"sluice.mesh-system.svc", "sluice.mesh-system.svc.cluster.local"}, info.ServingDNSNames)
	assert.Contains(t, info.Authenticator, "TokenReview")

	again, err := newCertificateService(ctx, cfg, client, prometheus.NewRegistry(), log)
	require.NoError(t, err)
	assert.Equal(t, info.CA.Intermediates[0].SHA256, again.Debug().(caDebug).Service.CA.Intermediates[0].SHA256)
	sec2, err := client.CoreV1().Secrets("mesh-system").Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, sec.Data, sec2.Data, "the Secret is not rewritten")

	// --ca-provided with no Secret: refuse to start rather than make a CA.
	_, err = newCertificateService(ctx, parseCAFlags(t, "--namespace=other", "--ca-provided"), client, nil, log)
	assert.ErrorContains(t, err, "operator provides it")
}
