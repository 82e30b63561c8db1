package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/trustbundle"
	"github.com/sluice-mesh/sluice/discovery"
)

func TestTrustConfigMapFlag(t *testing.T) {
	assert.Equal(t, "sluice-ca-root", parseCAFlags(t).trustConfigMap)
	assert.NoError(t, parseCAFlags(t, "--ca-trust-configmap=").validate(false), "off")
	assert.ErrorContains(t, parseCAFlags(t, "--ca-trust-configmap=Not_A_Name").validate(false), "--ca-trust-configmap")

	log := slog.New(slog.DiscardHandler)
	p, err := newTrustBundlePublisher(parseCAFlags(t), nil, fake.NewClientset(), discovery.AlwaysLeader{}, nil, log)
	require.NoError(t, err)
	assert.Nil(t, p, "no CA: nothing to publish")
}

// The publisher serve runs puts the CA Secret's roots into every
// namespace, under the name the flag gives.
func TestServePublishesTheCARoots(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	cfg := parseCAFlags(t, "--ca-trust-configmap=mesh-roots")
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	certs, err := newCertificateService(ctx, cfg, client, reg, log)
	require.NoError(t, err)

	off, err := newTrustBundlePublisher(parseCAFlags(t, "--ca-trust-configmap="), certs, client, discovery.AlwaysLeader{}, reg, log)
	require.NoError(t, err)
	assert.Nil(t, off)
	p, err := newTrustBundlePublisher(cfg, certs, client, discovery.AlwaysLeader{}, reg, log)
	require.NoError(t, err)
	require.NotNil(t, p)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	sec, err := client.CoreV1().Secrets(cfg.namespace).Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		cm, err := client.CoreV1().ConfigMaps("shop").Get(ctx, "mesh-roots", metav1.GetOptions{})
		if assert.NoError(c, err) {
			assert.Equal(c, string(sec.Data[ca.FileRootCert]), cm.Data[trustbundle.DefaultKey])
		}
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
