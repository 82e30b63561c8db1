package ca

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestDirStoreCreatesPrivateFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	store := DirStore{Dir: dir}

	_, err := store.Load(ctx)
	require.ErrorIs(t, err, ErrNotFound)

	m, err := LoadOrCreate(ctx, store, BootstrapOptions{Generate: true, Clock: fixed(t0)})
	require.NoError(t, err)

	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "directory")
	for _, name := range []string{FileRootCert, FileRootKey, FileIntermediateCert, FileIntermediateKey} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}

	// A restart loads the same CA.
	again, err := LoadOrCreate(ctx, store, BootstrapOptions{Generate: true, Clock: fixed(t0)})
	require.NoError(t, err)
	assert.Equal(t, m.Signer().Raw, again.Signer().Raw)

	require.ErrorIs(t, store.Create(ctx, newTestMaterial(t)), ErrExists)
}

func TestDirStoreConcurrentBootstrapsAgree(t *testing.T) {
	store := DirStore{Dir: filepath.Join(t.TempDir(), "ca")}
	results := bootstrapConcurrently(t, 4, func() Store { return store })
	for _, m := range results[1:] {
		assert.Equal(t, results[0].Signer().Raw, m.Signer().Raw)
	}
}

func TestDirStoreOperatorProvided(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newTestMaterial(t)
	files, err := m.Files()
	require.NoError(t, err)
	// A mounted kubernetes.io/tls Secret: read-only, no root key.
	for name, data := range map[string][]byte{"tls.crt": files[FileIntermediateCert], "tls.key": files[FileIntermediateKey], "ca.crt": files[FileRootCert]} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o400))
	}
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { os.Chmod(dir, 0o700) })

	got, err := LoadOrCreate(ctx, DirStore{Dir: dir}, BootstrapOptions{Generate: false, Clock: fixed(t0)})
	require.NoError(t, err)
	assert.Equal(t, m.Signer().Raw, got.Signer().Raw)
	assert.Nil(t, got.RootKey)

	_, err = LoadOrCreate(ctx, DirStore{Dir: t.TempDir()}, BootstrapOptions{Generate: false, Clock: fixed(t0)})
	assert.ErrorIs(t, err, ErrNotFound, "operator-provided but missing: no CA is generated")
}

func TestSecretStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	store := SecretStore{Client: client, Namespace: "sluice-system", Name: DefaultSecretName}

	m, err := LoadOrCreate(ctx, store, BootstrapOptions{Generate: true, Clock: fixed(t0)})
	require.NoError(t, err)
	sec, err := client.CoreV1().Secrets("sluice-system").Get(ctx, DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.SecretTypeOpaque, sec.Type)
	assert.ElementsMatch(t, []string{FileRootCert, FileRootKey, FileIntermediateCert, FileIntermediateKey}, keys(sec.Data))

	again, err := LoadOrCreate(ctx, store, BootstrapOptions{Generate: true, Clock: fixed(t0)})
	require.NoError(t, err)
	assert.Equal(t, m.Signer().Raw, again.Signer().Raw)
}

// Two replicas start together: both find no Secret, both generate a CA,
// both create; the API server lets one win and the loser reads the winner's
// CA back. Both end with the same CA, and there is one Secret.
func TestSecretStoreConcurrentBootstrapsEndWithOneCA(t *testing.T) {
	client := fake.NewClientset()
	var gets sync.WaitGroup
	gets.Add(2)
	var creates, conflicts int
	var mu sync.Mutex
	client.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		creates++
		mu.Unlock()
		return false, nil, nil
	})
	// Hold each replica after its first Load until both have loaded, so
	// both see "not found" and race to create.
	barrier := &getBarrier{wg: &gets}
	results := bootstrapConcurrently(t, 2, func() Store {
		return countingStore{Store: barrier.wrap(SecretStore{Client: client, Namespace: "sluice-system", Name: DefaultSecretName}), conflicts: &conflicts, mu: &mu}
	})
	assert.Equal(t, results[0].Signer().Raw, results[1].Signer().Raw)
	assert.Equal(t, 2, creates, "both replicas tried to create")
	assert.Equal(t, 1, conflicts, "one of them lost")
	list, err := client.CoreV1().Secrets("sluice-system").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)
}

func bootstrapConcurrently(t *testing.T, n int, store func() Store) []*Material {
	t.Helper()
	results := make([]*Material, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = LoadOrCreate(context.Background(), store(), BootstrapOptions{Generate: true, Clock: fixed(t0)})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return results
}

// getBarrier makes the first Load of each wrapped store wait until every
// store has done its first Load.
type getBarrier struct {
	wg *sync.WaitGroup
}

func (b *getBarrier) wrap(s Store) Store { return &barrierStore{Store: s, b: b} }

type barrierStore struct {
	Store
	b    *getBarrier
	once sync.Once
}

func (s *barrierStore) Load(ctx context.Context) (*Material, error) {
	m, err := s.Store.Load(ctx)
	s.once.Do(func() {
		s.b.wg.Done()
		s.b.wg.Wait()
	})
	return m, err
}

type countingStore struct {
	Store
	conflicts *int
	mu        *sync.Mutex
}

func (s countingStore) Create(ctx context.Context, m *Material) error {
	err := s.Store.Create(ctx, m)
	if errors.Is(err, ErrExists) {
		s.mu.Lock()
		*s.conflicts++
		s.mu.Unlock()
	}
	return err
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
