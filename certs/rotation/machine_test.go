package rotation

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// A requested root rotation through every phase, with two agents
// acknowledging the bundles: what the store holds and what the CA in use
// signs and trusts at each step.
func TestRootRotationThroughEveryPhase(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	f.agents.set("cart", 1)
	f.agents.set("web", 1)
	m := f.machine(func(c *Config) { c.Registerer = f.reg })
	start := f.state()
	oldRoot, oldInter := start.Material.Roots[0], start.Material.Signer()

	next := f.reconcile(m)
	assert.Equal(t, ca.PhaseIdle, f.state().Phase())
	assert.Equal(t, t0.Add(10*time.Second), next, "nothing due before the next reload")
	assertPhaseMetric(t, f, ca.PhaseIdle)

	// Idle → AddRoot → WaitBundle in one pass: the new root is in the
	// bundle (version 2), the old intermediate still signs.
	req := f.request(m, ca.RotateRoot)
	f.reconcile(m)
	st := f.state()
	require.Equal(t, ca.PhaseWaitBundle, st.Phase())
	assert.Equal(t, ca.RotateRoot, st.Rotation.Kind)
	assert.Equal(t, req.ID, st.Rotation.HandledRequest)
	assert.Equal(t, "started a root rotation", st.Rotation.RequestResult)
	require.Len(t, st.Material.Roots, 2)
	require.NotNil(t, st.Next)
	newRoot := st.Next.Roots[0]
	newInter := st.Next.Signer()
	assert.True(t, st.Material.Roots[1].Equal(newRoot))
	assert.Equal(t, uint64(2), st.TrustBundleVersion())
	cur := m.Source().Current()
	assert.Equal(t, uint64(2), cur.TrustBundleVersion())
	assert.True(t, cur.Material().Signer().Equal(oldInter), "the old intermediate still signs")
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.transitions.WithLabelValues("AddRoot")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.transitions.WithLabelValues("WaitBundle")))
	assertPhaseMetric(t, f, ca.PhaseWaitBundle)

	// WaitBundle holds until both agents applied version 2.
	f.clock.Step(20 * time.Second)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	assert.Len(t, m.Status().WaitingFor, 2)
	f.agents.set("cart", 2)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	assert.Equal(t, []string{"spiffe://cluster.local/ns/shop/sa/web pod web (applied version 1) on sluice-0"}, m.Status().WaitingFor)
	assert.Equal(t, 1, m.Status().LaggingAgents)

	// → SwitchSigner → WaitLeaves: the new intermediate signs; leaves
	// verify to the two-root bundle the agents hold, and to the new root.
	f.agents.set("web", 2)
	switched := f.clock.Now()
	f.reconcile(m)
	st = f.state()
	require.Equal(t, ca.PhaseWaitLeaves, st.Phase())
	assert.Nil(t, st.Next)
	assert.True(t, st.Material.Signer().Equal(newInter))
	assert.Equal(t, switched, st.Rotation.SwitchedAt)
	assert.Equal(t, switched.Add(leafTTL+20*time.Second), st.Rotation.LeavesUntil)
	assert.Equal(t, uint64(2), st.TrustBundleVersion(), "the bundle did not change")
	cur = m.Source().Current()
	assert.True(t, cur.Material().Signer().Equal(newInter))
	assert.NoError(t, leafVerifies(t, cur, []*x509.Certificate{oldRoot, newRoot}, f.clock.Now()))
	assert.NoError(t, leafVerifies(t, cur, []*x509.Certificate{newRoot}, f.clock.Now()))
	assert.Error(t, leafVerifies(t, cur, []*x509.Certificate{oldRoot}, f.clock.Now()))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.transitions.WithLabelValues("SwitchSigner")))

	// WaitLeaves lasts the longest leaf lifetime.
	f.clock.SetTime(st.Rotation.LeavesUntil.Add(-time.Second))
	next = f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitLeaves, f.state().Phase())
	assert.Equal(t, st.Rotation.LeavesUntil, next)
	f.clock.Step(time.Second)
	f.reconcile(m)

	// → DropOldRoot: the bundle is the new root only (version 3).
	st = f.state()
	require.Equal(t, ca.PhaseDropOldRoot, st.Phase())
	require.Len(t, st.Material.Roots, 1)
	assert.True(t, st.Material.Roots[0].Equal(newRoot))
	assert.Equal(t, uint64(3), m.Source().Current().TrustBundleVersion())
	f.clock.Step(20 * time.Second)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseDropOldRoot, f.state().Phase(), "ACK-tracked again")

	// → Idle once both applied it.
	f.agents.setAll(3)
	f.reconcile(m)
	st = f.state()
	require.Equal(t, ca.PhaseIdle, st.Phase())
	require.NotNil(t, st.Rotation.Last)
	assert.Equal(t, ca.RotateRoot, st.Rotation.Last.Kind)
	assert.Equal(t, t0, st.Rotation.Last.Started)
	assert.Equal(t, f.clock.Now(), st.Rotation.Last.Finished)
	assert.Contains(t, st.Rotation.RequestResult, "completed a root rotation")
	assert.NoError(t, leafVerifies(t, m.Source().Current(), []*x509.Certificate{newRoot}, f.clock.Now()))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.completed.WithLabelValues("root")))
	assertPhaseMetric(t, f, ca.PhaseIdle)

	s := m.Status()
	require.Len(t, s.Roots, 1)
	assert.Equal(t, "signing", s.Roots[0].Role)
	assert.Zero(t, s.LaggingAgents)
	n, err := testutil.GatherAndCount(f.reg, "sluice_ca_rotation_due_timestamp_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

// At 80% of its life the intermediate is replaced under the same root:
// no bundle change, no wait.
func TestIntermediateRotatesAt80Percent(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	f.agents.set("cart", 1)
	m := f.machine(nil)
	st := f.state()
	inter := st.Material.Signer()
	due := inter.NotBefore.Add(time.Duration(0.8 * float64(inter.NotAfter.Sub(inter.NotBefore))))

	f.clock.SetTime(due.Add(-time.Second))
	f.reconcile(m)
	assert.True(t, f.state().Material.Signer().Equal(inter), "not yet")

	f.clock.Step(time.Second)
	f.reconcile(m)
	st = f.state()
	assert.Equal(t, ca.PhaseIdle, st.Phase())
	assert.False(t, st.Material.Signer().Equal(inter), "a new intermediate")
	require.NoError(t, st.Material.Signer().CheckSignatureFrom(st.Material.Roots[0]), "under the same root")
	assert.Equal(t, uint64(1), st.TrustBundleVersion())
	require.NotNil(t, st.Rotation.Last)
	assert.Equal(t, ca.RotateIntermediate, st.Rotation.Last.Kind)
	assert.Contains(t, st.Rotation.Last.Reason, "intermediate reached 80% of its life")
	assert.True(t, m.Source().Current().Material().Signer().Equal(st.Material.Signer()))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.transitions.WithLabelValues("SwitchSigner")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.completed.WithLabelValues("intermediate")))
	assert.Equal(t, f.clock.Now().Add(interTTL), st.Material.Signer().NotAfter, "a full intermediate lifetime")
}

// At 80% of the root's life a root rotation starts, even though the
// intermediate (capped at the root's end) is due too.
func TestRootRotatesAt80Percent(t *testing.T) {
	f := newFixture(t, rootTTL, rootTTL)
	m := f.machine(nil)
	root := f.state().Material.Roots[0]
	due := root.NotBefore.Add(time.Duration(0.8 * float64(root.NotAfter.Sub(root.NotBefore))))
	f.clock.SetTime(due.Add(-time.Second))
	f.reconcile(m)
	assert.Equal(t, ca.PhaseIdle, f.state().Phase())
	f.clock.Step(time.Second)
	f.reconcile(m)
	st := f.state()
	// No agent is connected: the bundle wait still lasts MinBundleWait.
	require.Equal(t, ca.PhaseWaitBundle, st.Phase())
	assert.Equal(t, ca.RotateRoot, st.Rotation.Kind)
	assert.Contains(t, st.Rotation.Reason, "the root reached 80% of its life")
	f.clock.Step(20 * time.Second)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitLeaves, f.state().Phase())
}

// A restart in any phase resumes the rotation: a new machine on the store
// serves what the store says and finishes the rotation the old one began,
// with the root it made.
func TestRestartResumesFromEveryPhase(t *testing.T) {
	for _, tc := range []struct {
		kind  ca.RotationKind
		phase ca.Phase
	}{
		{ca.RotateRoot, ca.PhaseAddRoot},
		{ca.RotateRoot, ca.PhaseWaitBundle},
		{ca.RotateRoot, ca.PhaseSwitchSigner},
		{ca.RotateRoot, ca.PhaseWaitLeaves},
		{ca.RotateRoot, ca.PhaseDropOldRoot},
		{ca.RotateIntermediate, ca.PhaseSwitchSigner},
	} {
		t.Run(string(tc.kind)+"/"+string(tc.phase), func(t *testing.T) {
			f := newFixture(t, rootTTL, interTTL)
			f.agents.set("cart", 1)
			orig := f.state().Material
			a := f.machine(func(c *Config) { c.Store = crashingStore{Store: f.store, phase: tc.phase, kind: tc.kind} })
			f.request(a, tc.kind)
			crashed := false
			for range 20 {
				_, err := a.Reconcile(f.ctx)
				if errors.Is(err, errCrash) {
					crashed = true
					break
				}
				require.NoError(t, err)
				f.agents.setAll(f.state().TrustBundleVersion())
				f.clock.Step(30 * time.Minute)
			}
			require.True(t, crashed, "never reached %s", tc.phase)
			at := f.state()
			require.Equal(t, tc.phase, at.Phase())
			var newRoot *x509.Certificate
			if tc.kind == ca.RotateRoot {
				if at.Next != nil {
					newRoot = at.Next.Roots[0]
				} else {
					newRoot = signingRoot(at.Material)
				}
			}

			// The new machine serves the stored CA before its first pass.
			f.clock.Step(5 * time.Minute)
			b := f.machine(nil)
			cur := b.Source().Current()
			assert.Equal(t, at.TrustBundleVersion(), cur.TrustBundleVersion())
			assert.True(t, cur.Material().Signer().Equal(at.Material.Signer()))

			f.reconcile(b)
			if tc.phase == ca.PhaseSwitchSigner && tc.kind == ca.RotateRoot {
				st := f.state()
				require.Equal(t, ca.PhaseWaitLeaves, st.Phase())
				assert.Equal(t, at.Rotation.SwitchedAt.Add(leafTTL+20*time.Second), st.Rotation.LeavesUntil, "from the stored switch time")
			}
			if tc.phase == ca.PhaseWaitLeaves {
				assert.Equal(t, ca.PhaseWaitLeaves, f.state().Phase(), "the stored deadline holds")
			}
			for range 20 {
				if f.state().Phase() == ca.PhaseIdle {
					break
				}
				f.agents.setAll(f.state().TrustBundleVersion())
				f.clock.Step(30 * time.Minute)
				f.reconcile(b)
			}
			st := f.state()
			require.Equal(t, ca.PhaseIdle, st.Phase())
			require.NotNil(t, st.Rotation.Last)
			assert.Equal(t, tc.kind, st.Rotation.Last.Kind)
			require.Len(t, st.Material.Roots, 1)
			if tc.kind == ca.RotateRoot {
				assert.True(t, st.Material.Roots[0].Equal(newRoot), "the root made before the restart")
				assert.False(t, st.Material.Roots[0].Equal(orig.Roots[0]))
				assert.Equal(t, uint64(3), st.TrustBundleVersion())
			} else {
				assert.True(t, st.Material.Roots[0].Equal(orig.Roots[0]))
				assert.False(t, st.Material.Signer().Equal(orig.Signer()))
			}
			assert.NoError(t, leafVerifies(t, b.Source().Current(), st.Material.Roots, f.clock.Now()))
		})
	}
}

// WaitBundle waits for ever for a connected agent that does not apply the
// bundle, and stops waiting for it when it disconnects.
func TestWaitBundleBlocksOnALaggingAgent(t *testing.T) {
	f := newFixture(t, 1000*time.Hour, 1000*time.Hour)
	f.agents.set("cart", 1)
	f.agents.set("stuck", 1)
	m := f.machine(func(c *Config) { c.Registerer = f.reg })
	f.request(m, ca.RotateRoot)
	f.reconcile(m)
	f.agents.set("cart", 2)
	for range 3 {
		f.clock.Step(24 * time.Hour)
		f.reconcile(m)
		require.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	}
	assert.Equal(t, []string{"spiffe://cluster.local/ns/shop/sa/stuck pod stuck (applied version 1) on sluice-0"}, m.Status().WaitingFor)
	n, err := testutil.GatherAndCount(f.reg, "sluice_ca_rotation_lagging_agents")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assert.Equal(t, 1.0, gauge(t, f, "sluice_ca_rotation_lagging_agents"))

	f.agents.remove("stuck")
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitLeaves, f.state().Phase())
}

// Intermediates that age during a long bundle wait are renewed under
// their own roots, without a bundle change.
func TestWaitBundleRenewsAgeingIntermediates(t *testing.T) {
	f := newFixture(t, 1000*time.Hour, interTTL)
	f.agents.set("stuck", 1)
	m := f.machine(func(c *Config) { c.Generate.RootTTL = 1000 * time.Hour })
	f.request(m, ca.RotateRoot)
	f.reconcile(m)
	before := f.state()
	require.Equal(t, ca.PhaseWaitBundle, before.Phase())
	f.clock.Step(9 * time.Hour)
	f.reconcile(m)
	after := f.state()
	require.Equal(t, ca.PhaseWaitBundle, after.Phase())
	assert.False(t, after.Material.Signer().Equal(before.Material.Signer()))
	assert.False(t, after.Next.Signer().Equal(before.Next.Signer()))
	require.NoError(t, after.Material.Signer().CheckSignatureFrom(before.Material.Roots[0]))
	require.NoError(t, after.Next.Signer().CheckSignatureFrom(before.Next.Roots[0]))
	assert.Equal(t, uint64(2), after.TrustBundleVersion())
	assert.True(t, m.Source().Current().Material().Signer().Equal(after.Material.Signer()))

	f.agents.set("stuck", 2)
	f.reconcile(m)
	st := f.state()
	assert.Equal(t, ca.PhaseWaitLeaves, st.Phase())
	assert.True(t, st.Material.Signer().Equal(after.Next.Signer()))
}

// With a timeout, WaitBundle goes on without the agents that lag.
func TestWaitBundleTimeout(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	f.agents.set("stuck", 1)
	m := f.machine(func(c *Config) { c.BundleTimeout = time.Hour })
	f.request(m, ca.RotateRoot)
	f.reconcile(m)
	f.clock.Step(time.Hour - time.Second)
	next := f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	assert.Equal(t, t0.Add(time.Hour), next, "woken at the deadline")
	f.clock.Step(time.Second)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitLeaves, f.state().Phase())
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.timeouts))
}

// The leader counts the agents of the other replicas through their
// reports: a replica still serving the old bundle, or whose agents lag,
// holds the wait; a report too old (its replica is gone) does not.
func TestWaitBundleWaitsForOtherReplicas(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	m := f.machine(nil)
	report := func(replica string, at time.Time, version uint64, agents, lagging int, names ...string) {
		require.NoError(t, f.store.Report(f.ctx, ca.ReplicaReport{Replica: replica, At: at, BundleVersion: version, Agents: agents, Lagging: lagging, LaggingAgents: names}))
	}
	report("sluice-1", f.clock.Now(), 1, 3, 0)
	report("sluice-gone", f.clock.Now().Add(-4*time.Minute), 1, 7, 7)
	f.request(m, ca.RotateRoot)
	f.reconcile(m)
	f.clock.Step(20 * time.Second)
	f.reconcile(m)
	require.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	assert.Equal(t, []string{"replica sluice-1 serves trust bundle version 1 to its 3 agents"}, m.Status().WaitingFor)
	assert.Equal(t, 3, m.Status().LaggingAgents)

	report("sluice-1", f.clock.Now(), 2, 3, 1, "web-7")
	f.clock.Step(10 * time.Second)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	assert.Equal(t, []string{"web-7 on sluice-1"}, m.Status().WaitingFor)

	report("sluice-1", f.clock.Now(), 2, 3, 0)
	f.clock.Step(10 * time.Second)
	f.reconcile(m)
	assert.Equal(t, ca.PhaseWaitLeaves, f.state().Phase())

	// This replica reported too.
	var own *ca.ReplicaReport
	for _, r := range f.state().Reports {
		if r.Replica == "sluice-0" {
			own = &r
		}
	}
	require.NotNil(t, own)
	assert.Equal(t, uint64(2), own.BundleVersion)
}

// A follower never transitions but serves what the leader stored; two
// replicas that both think they lead make each transition once, because
// every transition is a compare-and-swap.
func TestFollowerAndTwoLeaders(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	leader := f.machine(nil)
	followerAgents := newFakeAgents()
	follower := f.machine(func(c *Config) {
		c.IsLeader = func() bool { return false }
		c.Replica, c.Agents = "sluice-1", followerAgents
	})
	f.request(follower, ca.RotateRoot)
	f.reconcile(follower)
	assert.Equal(t, ca.PhaseIdle, f.state().Phase(), "a follower does not act on requests")
	f.clock.Step(10 * time.Second) // the leader reads the store again
	f.reconcile(leader)
	require.Equal(t, ca.PhaseWaitBundle, f.state().Phase())
	f.clock.Step(10 * time.Second)
	f.reconcile(follower)
	assert.Equal(t, uint64(2), follower.Source().Current().TrustBundleVersion(), "the follower serves the new bundle")
	assert.Equal(t, ca.PhaseWaitBundle, follower.Status().Phase)

	// Two leaders, reading the store rarely, both see the intermediate due.
	g := newFixture(t, rootTTL, interTTL)
	inter := g.state().Material.Signer()
	due := inter.NotBefore.Add(time.Duration(0.8 * float64(inter.NotAfter.Sub(inter.NotBefore))))
	g.clock.SetTime(due.Add(-time.Minute))
	bStore := &conflictCounter{Store: g.store}
	a := g.machine(func(c *Config) { c.ReloadInterval, c.ReportInterval = time.Hour, time.Hour })
	b := g.machine(func(c *Config) {
		c.ReloadInterval, c.ReportInterval, c.Replica, c.Store = time.Hour, time.Hour, "sluice-1", bStore
	})
	g.reconcile(a)
	g.reconcile(b)
	g.clock.Step(2 * time.Minute)
	g.reconcile(a)
	afterA := g.state()
	require.False(t, afterA.Material.Signer().Equal(inter))
	g.reconcile(b) // decides from its stale state; its update conflicts
	assert.Equal(t, 1, bStore.conflicts)
	st := g.state()
	assert.True(t, st.Material.Signer().Equal(afterA.Material.Signer()), "b did not rotate again")
	assert.True(t, b.Source().Current().Material().Signer().Equal(afterA.Material.Signer()), "b serves a's intermediate")
	assert.Equal(t, 1.0, testutil.ToFloat64(a.metrics.completed.WithLabelValues("intermediate")))
	assert.Zero(t, testutil.ToFloat64(b.metrics.completed.WithLabelValues("intermediate")))
}

// Without the root key (the operator keeps it) nothing can be rotated: a
// request is refused and a due rotation is reported as blocked.
func TestNoRootKeyNoRotation(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	// Replace the stored CA by one without its root key.
	st := f.state()
	st.Material.RootKey = nil
	_, err := f.store.Update(f.ctx, st)
	require.NoError(t, err)
	m := f.machine(nil)
	assert.Contains(t, m.Status().Mode, "manual")
	f.request(m, ca.RotateRoot)
	f.reconcile(m)
	st = f.state()
	assert.Equal(t, ca.PhaseIdle, st.Phase())
	assert.Equal(t, "refused: the root key is not in the store", st.Rotation.RequestResult)

	inter := st.Material.Signer()
	f.clock.SetTime(inter.NotBefore.Add(time.Duration(0.9 * float64(inter.NotAfter.Sub(inter.NotBefore)))))
	f.reconcile(m)
	assert.Contains(t, m.Status().Blocked, "intermediate rotation is due")
	assert.True(t, f.state().Material.Signer().Equal(inter))
}

// A request during a rotation is recorded as ignored.
func TestRequestDuringRotationIsIgnored(t *testing.T) {
	f := newFixture(t, rootTTL, interTTL)
	f.agents.set("stuck", 1)
	m := f.machine(nil)
	f.request(m, ca.RotateRoot)
	f.reconcile(m)
	second := f.request(m, ca.RotateIntermediate)
	f.reconcile(m)
	st := f.state()
	assert.Equal(t, ca.PhaseWaitBundle, st.Phase())
	assert.Equal(t, second.ID, st.Rotation.HandledRequest)
	assert.Contains(t, st.Rotation.RequestResult, "ignored: a root rotation is in progress")
}

func assertPhaseMetric(t *testing.T, f *fixture, want ca.Phase) {
	t.Helper()
	families, err := f.reg.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() != "sluice_ca_rotation_phase" {
			continue
		}
		for _, mt := range fam.GetMetric() {
			v := mt.GetGauge().GetValue()
			phase := mt.GetLabel()[0].GetValue()
			if phase == string(want) {
				assert.Equal(t, 1.0, v, phase)
			} else {
				assert.Equal(t, 0.0, v, phase)
			}
		}
		return
	}
	t.Error("no sluice_ca_rotation_phase")
}

func gauge(t *testing.T, f *fixture, name string) float64 {
	t.Helper()
	families, err := f.reg.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() == name {
			return fam.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
