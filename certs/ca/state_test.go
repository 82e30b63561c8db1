package ca

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-mesh/sluice/certs/ca/catest"
)

// A state in the middle of a root rotation survives Files → ParseState.
func TestStateRoundTrip(t *testing.T) {
	old, next := newTestMaterial(t), newTestMaterial(t)
	st := &State{
		Material: &Material{
			Roots:   append(old.Roots, next.Roots...),
			RootKey: old.RootKey, Intermediates: old.Intermediates, IntermediateKey: old.IntermediateKey,
		},
		Next: next,
		Rotation: Rotation{Phase: PhaseWaitBundle, Kind: RotateRoot, Reason: "test", Started: t0, Since: t0.Add(time.Minute),
			BundleVersion: 2, HandledRequest: "r1"},
	}
	files, err := st.Files()
	require.NoError(t, err)
	for _, name := range []string{FileNextRootCert, FileNextRootKey, FileNextIntermediateCert, FileNextIntermediateKey, FileRotation} {
		assert.Contains(t, files, name)
	}
	got, err := ParseState(files)
	require.NoError(t, err)
	require.NoError(t, got.Material.Validate(t0))
	require.NoError(t, got.Next.Validate(t0))
	assert.Len(t, got.Material.Roots, 2)
	assert.Equal(t, next.Signer().Raw, got.Next.Signer().Raw)
	assert.Equal(t, PhaseWaitBundle, got.Phase())
	assert.Equal(t, t0.Add(time.Minute), got.Rotation.Since)
	assert.Equal(t, uint64(2), got.TrustBundleVersion())
	assert.Equal(t, BundleDigest(st.Material.Roots), got.Rotation.BundleSHA256)

	// Roots replaced behind Sluice's back get a new version.
	got.Material.Roots = old.Roots
	assert.Equal(t, uint64(3), got.TrustBundleVersion())

	// A CA stored before rotation existed is Idle at version 1.
	plain, err := old.Files()
	require.NoError(t, err)
	idle, err := ParseState(plain)
	require.NoError(t, err)
	assert.Equal(t, PhaseIdle, idle.Phase())
	assert.Nil(t, idle.Next)
	assert.Equal(t, uint64(1), idle.TrustBundleVersion())

	files[FileRotation] = []byte(`{"phase":"Sideways"}`)
	_, err = ParseState(files)
	assert.ErrorContains(t, err, `unknown phase "Sideways"`)
}

// storeContract runs what every Store must do beyond Load and Create.
func storeContract(t *testing.T, store Store) {
	ctx := context.Background()
	_, err := LoadOrCreate(ctx, store, BootstrapOptions{Generate: true, Clock: fixed(t0)})
	require.NoError(t, err)

	st, err := store.LoadState(ctx)
	require.NoError(t, err)
	assert.Equal(t, PhaseIdle, st.Phase())
	assert.Equal(t, uint64(1), st.TrustBundleVersion())
	require.NotEmpty(t, st.Revision)

	// Two writers read the same revision: the first wins, the second
	// conflicts and nothing of its change is stored.
	a, b := st.Clone(), st.Clone()
	next := newTestMaterial(t)
	a.Material.Roots = append(a.Material.Roots, next.Roots...)
	a.Next = next
	a.Rotation = Rotation{Phase: PhaseAddRoot, Kind: RotateRoot, Since: t0, BundleVersion: 2}
	revA, err := store.Update(ctx, a)
	require.NoError(t, err)
	assert.NotEqual(t, st.Revision, revA)
	b.Rotation = Rotation{Phase: PhaseSwitchSigner, Kind: RotateIntermediate, Since: t0}
	_, err = store.Update(ctx, b)
	require.ErrorIs(t, err, ErrConflict)

	got, err := store.LoadState(ctx)
	require.NoError(t, err)
	assert.Equal(t, revA, got.Revision)
	assert.Equal(t, PhaseAddRoot, got.Phase())
	assert.Equal(t, uint64(2), got.TrustBundleVersion())
	require.NotNil(t, got.Next)
	assert.Equal(t, next.Signer().Raw, got.Next.Signer().Raw)
	assert.Len(t, got.Material.Roots, 2)

	// A request and reports are recorded beside the state and change the
	// revision, so that an Update from before them conflicts.
	req := RotationRequest{ID: "req-1", Kind: RotateRoot, At: t0, By: "test"}
	require.NoError(t, store.RequestRotation(ctx, req))
	require.NoError(t, store.Report(ctx, ReplicaReport{Replica: "sluice-b", At: t0, BundleVersion: 2, Agents: 3, Lagging: 1, LaggingAgents: []string{"x"}}))
	require.NoError(t, store.Report(ctx, ReplicaReport{Replica: "sluice-a", At: t0, BundleVersion: 2, Agents: 1}))
	stale := got.Clone()
	stale.Rotation.Phase = PhaseWaitBundle
	_, err = store.Update(ctx, stale)
	require.ErrorIs(t, err, ErrConflict)

	got, err = store.LoadState(ctx)
	require.NoError(t, err)
	require.NotNil(t, got.Request)
	assert.Equal(t, req.ID, got.Request.ID)
	assert.Equal(t, RotateRoot, got.Request.Kind)
	require.Len(t, got.Reports, 2)
	assert.Equal(t, "sluice-a", got.Reports[0].Replica)
	assert.Equal(t, 1, got.Reports[1].Lagging)

	// Update replaces the reports with the state's and leaves the request;
	// the next material goes when the state has none.
	got.Reports = got.Reports[:1]
	got.Next = nil
	got.Rotation.Phase = PhaseWaitBundle
	_, err = store.Update(ctx, got)
	require.NoError(t, err)
	final, err := store.LoadState(ctx)
	require.NoError(t, err)
	assert.Equal(t, PhaseWaitBundle, final.Phase())
	assert.Nil(t, final.Next)
	require.Len(t, final.Reports, 1)
	assert.Equal(t, "sluice-a", final.Reports[0].Replica)
	require.NotNil(t, final.Request)
	m, err := store.Load(ctx)
	require.NoError(t, err)
	assert.Len(t, m.Roots, 2, "Load reads the updated material")
}

func TestDirStoreState(t *testing.T) {
	storeContract(t, DirStore{Dir: filepath.Join(t.TempDir(), "ca")})
}

func TestSecretStoreState(t *testing.T) {
	client := catest.NewClientset()
	store := SecretStore{Client: client, Namespace: "sluice-system", Name: DefaultSecretName}
	storeContract(t, store)
	sec, err := client.CoreV1().Secrets("sluice-system").Get(context.Background(), DefaultSecretName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Contains(t, sec.Annotations, ReplicaAnnotationPrefix+"sluice-a")
	assert.NotContains(t, sec.Annotations, ReplicaAnnotationPrefix+"sluice-b")
	assert.Contains(t, sec.Annotations, AnnotationRotationRequest)
	assert.Contains(t, sec.Annotations, "sluice.dev/description", "other annotations are kept")
	var rot Rotation
	require.NoError(t, json.Unmarshal(sec.Data[FileRotation], &rot))
	assert.Equal(t, PhaseWaitBundle, rot.Phase)
}

// An Update cut short after its journal was written is read as done, and
// the next Update completes cleanly.
func TestDirStoreJournalMakesUpdatesAtomic(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	store := DirStore{Dir: dir}
	_, err := LoadOrCreate(ctx, store, BootstrapOptions{Generate: true, Clock: fixed(t0)})
	require.NoError(t, err)
	st, err := store.LoadState(ctx)
	require.NoError(t, err)

	// The journal of a switch to a new intermediate, written before a crash:
	// only intermediate.crt made it to disk, not its key.
	next := st.Clone()
	inter, key, err := NewIntermediate(st.Material.Roots[0], st.Material.RootKey, "", t0, time.Hour)
	require.NoError(t, err)
	next.Material.Intermediates, next.Material.IntermediateKey = []*x509.Certificate{inter}, key
	next.Rotation = Rotation{Phase: PhaseSwitchSigner, Kind: RotateIntermediate, Since: t0}
	files, err := next.Files()
	require.NoError(t, err)
	data, err := json.Marshal(journal{Write: files})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, journalFile), data, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, FileIntermediateCert), files[FileIntermediateCert], 0o600))

	got, err := store.LoadState(ctx)
	require.NoError(t, err)
	require.NoError(t, got.Material.Validate(t0), "key and certificate agree")
	assert.Equal(t, inter.Raw, got.Material.Signer().Raw)
	assert.Equal(t, PhaseSwitchSigner, got.Phase())

	got.Rotation.Phase = PhaseIdle
	_, err = store.Update(ctx, got)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, journalFile))
	assert.True(t, os.IsNotExist(err), "journal removed")
	again, err := store.LoadState(ctx)
	require.NoError(t, err)
	assert.Equal(t, inter.Raw, again.Material.Signer().Raw)
	assert.Equal(t, PhaseIdle, again.Phase())
	for _, name := range []string{FileIntermediateCert, FileIntermediateKey, FileRotation} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}
}

func TestReplicaSlot(t *testing.T) {
	assert.Equal(t, "sluice-7d9f-abc", ReplicaSlot("sluice-7d9f-abc"))
	for _, bad := range []string{"", "a/b", "-x", "x..", string(make([]byte, 70))} {
		slot := ReplicaSlot(bad)
		assert.Regexp(t, `^r-[0-9a-f]{16}$`, slot, "%q", bad)
	}
}
