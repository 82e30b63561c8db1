package rotation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
	"github.com/sluice-mesh/sluice/certs/service"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Lifetimes of the test CA: short enough for a fake clock to cross.
const (
	rootTTL  = 100 * time.Hour
	interTTL = 10 * time.Hour
	leafTTL  = time.Hour
)

// fakeAgents is service.Agents' view for the machine: agents by name with
// the version each applied.
type fakeAgents struct {
	mu      sync.Mutex
	applied map[string]uint64
	changed chan struct{}
}

func newFakeAgents() *fakeAgents {
	return &fakeAgents{applied: map[string]uint64{}, changed: make(chan struct{})}
}

func (f *fakeAgents) set(name string, version uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[name] = version
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAgents) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.applied, name)
	close(f.changed)
	f.changed = make(chan struct{})
}

// setAll makes every agent apply version.
func (f *fakeAgents) setAll(version uint64) {
	for _, a := range f.List() {
		f.set(a.Pod, version)
	}
}

func (f *fakeAgents) List() []service.AgentStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []service.AgentStatus
	for name, v := range f.applied {
		out = append(out, service.AgentStatus{ID: "spiffe://cluster.local/ns/shop/sa/" + name, Pod: name, AppliedVersion: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

func (f *fakeAgents) Lagging(version uint64) []service.AgentStatus {
	var out []service.AgentStatus
	for _, a := range f.List() {
		if a.AppliedVersion != version {
			out = append(out, a)
		}
	}
	return out
}

func (f *fakeAgents) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// fixture is a store holding a fresh CA, a fake clock and agents.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	clock  *testingclock.FakeClock
	store  ca.Store
	agents *fakeAgents
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, rootLife, interLife time.Duration) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), clock: testingclock.NewFakeClock(t0), agents: newFakeAgents(), reg: prometheus.NewRegistry()}
	f.store = ca.DirStore{Dir: filepath.Join(t.TempDir(), "ca")}
	_, err := ca.LoadOrCreate(f.ctx, f.store, ca.BootstrapOptions{
		Generate:        true,
		GenerateOptions: ca.GenerateOptions{TrustDomain: "cluster.local", RootTTL: rootLife, IntermediateTTL: interLife},
		Clock:           f.clock.Now,
	})
	require.NoError(t, err)
	return f
}

func (f *fixture) config() Config {
	return Config{
		Store: f.store, Agents: f.agents, Replica: "sluice-0", Clock: f.clock,
		Generate:   ca.GenerateOptions{TrustDomain: "cluster.local", RootTTL: rootTTL, IntermediateTTL: interTTL},
		MaxLeafTTL: leafTTL, ReloadInterval: 10 * time.Second,
	}
}

func (f *fixture) machine(tune func(*Config)) *Machine {
	f.t.Helper()
	cfg := f.config()
	if tune != nil {
		tune(&cfg)
	}
	m, err := New(f.ctx, cfg)
	require.NoError(f.t, err)
	return m
}

// reconcile makes one pass, which must not fail, and returns when the next
// is due.
func (f *fixture) reconcile(m *Machine) time.Time {
	f.t.Helper()
	next, err := m.Reconcile(f.ctx)
	require.NoError(f.t, err)
	return next
}

func (f *fixture) state() *ca.State {
	f.t.Helper()
	st, err := f.store.LoadState(f.ctx)
	require.NoError(f.t, err)
	return st
}

func (f *fixture) request(m *Machine, kind ca.RotationKind) ca.RotationRequest {
	f.t.Helper()
	r := NewRequest(kind, "test", f.clock.Now())
	require.NoError(f.t, m.Request(f.ctx, r))
	return r
}

// leafVerifies issues a leaf with c and checks it against roots.
func leafVerifies(t *testing.T, c *ca.CA, roots []*x509.Certificate, now time.Time) error {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	iss, err := c.IssueLeaf(ca.LeafRequest{PublicKey: key.Public(), ID: identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}, TTL: time.Minute})
	require.NoError(t, err)
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, i := range c.Material().Intermediates {
		inter.AddCert(i)
	}
	_, err = iss.Certificate.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// crashingStore fails (after writing) the Update that stores phase, as if
// the process died right after it.
type crashingStore struct {
	ca.Store
	phase ca.Phase
	kind  ca.RotationKind
}

var errCrash = errors.New("crash")

func (s crashingStore) Update(ctx context.Context, st *ca.State) (string, error) {
	rev, err := s.Store.Update(ctx, st)
	if err == nil && st.Phase() == s.phase && st.Rotation.Kind == s.kind {
		return rev, errCrash
	}
	return rev, err
}

// conflictCounter counts the updates that lose their compare-and-swap.
type conflictCounter struct {
	ca.Store
	conflicts int
}

func (s *conflictCounter) Update(ctx context.Context, st *ca.State) (string, error) {
	rev, err := s.Store.Update(ctx, st)
	if errors.Is(err, ca.ErrConflict) {
		s.conflicts++
	}
	return rev, err
}
