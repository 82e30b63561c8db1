package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
)

func TestFileWriter(t *testing.T) {
	c := newCA(t, time.Now)
	creds := issue(t, c, testID("cart"), time.Now())
	w := FileWriter{Dir: filepath.Join(t.TempDir(), "certs")}
	require.NoError(t, w.Publish(context.Background(), creds))

	chain, key, bundle := w.Paths()
	for path, want := range map[string]struct {
		data []byte
		perm os.FileMode
	}{
		chain:  {creds.ChainPEM, 0o644},
		key:    {creds.KeyPEM, 0o600},
		bundle: {creds.TrustBundlePEM, 0o644},
	} {
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, want.data, got, path)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, want.perm, fi.Mode().Perm(), path)
	}
	entries, err := os.ReadDir(w.Dir)
	require.NoError(t, err)
	assert.Len(t, entries, 3, "no temporary files left")

	// Renewal replaces all three.
	renewed := issue(t, c, testID("cart"), time.Now())
	require.NoError(t, w.Publish(context.Background(), renewed))
	got, err := os.ReadFile(key)
	require.NoError(t, err)
	assert.Equal(t, renewed.KeyPEM, got)
}

// gRPC's own file_watcher provider (what the bootstrap's
// certificate_providers section configures) reads what FileWriter wrote.
func TestFileWriterFeedsGRPCFileWatcher(t *testing.T) {
	c := newCA(t, time.Now)
	creds := issue(t, c, testID("cart"), time.Now())
	w := FileWriter{Dir: t.TempDir()}
	require.NoError(t, w.Publish(context.Background(), creds))
	chain, key, bundle := w.Paths()

	p, err := pemfile.NewProvider(pemfile.Options{CertFile: chain, KeyFile: key, RootFile: bundle, RefreshDuration: time.Hour})
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	km, err := p.KeyMaterial(ctx)
	require.NoError(t, err)
	require.Len(t, km.Certs, 1)
	assert.Equal(t, creds.Leaf.Raw, km.Certs[0].Certificate[0])
	assert.True(t, km.Roots.Equal(creds.Roots))
}
