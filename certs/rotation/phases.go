package rotation

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// decide returns the state to store for the transition due at now, or nil
// and when to look again.
func (m *Machine) decide(now time.Time, st *ca.State) (*ca.State, time.Time, error) {
	rot := st.Rotation
	enter := func(p ca.Phase) *ca.State {
		n := st.Clone()
		n.Rotation.Phase, n.Rotation.Since = p, now
		return n
	}
	req := pendingRequest(st)
	if req != nil && st.Phase() != ca.PhaseIdle {
		n := st.Clone()
		n.Rotation.HandledRequest = req.ID
		n.Rotation.RequestResult = fmt.Sprintf("ignored: a %s rotation is in progress (phase %s)", rot.Kind, st.Phase())
		return n, time.Time{}, nil
	}
	switch st.Phase() {
	case ca.PhaseIdle:
		return m.decideIdle(now, st, req)

	case ca.PhaseAddRoot:
		// The new bundle is stored and served here: wait for the agents.
		if st.Next == nil {
			return nil, time.Time{}, fmt.Errorf("phase %s without the next CA in the store", st.Phase())
		}
		return enter(ca.PhaseWaitBundle), time.Time{}, nil

	case ca.PhaseWaitBundle:
		if st.Next == nil {
			return nil, time.Time{}, fmt.Errorf("phase %s without the next CA in the store", st.Phase())
		}
		if n, err := m.renewIntermediates(now, st); n != nil || err != nil {
			return n, time.Time{}, err
		}
		if ok, wake := m.bundleApplied(now, st); !ok {
			return nil, minTime(wake, minTime(m.dueAt(st.Material.Signer()), m.dueAt(st.Next.Signer()))), nil
		}
		n := enter(ca.PhaseSwitchSigner)
		n.Material.RootKey = st.Next.RootKey
		n.Material.Intermediates = st.Next.Intermediates
		n.Material.IntermediateKey = st.Next.IntermediateKey
		n.Next = nil
		n.Rotation.SwitchedAt = now
		if err := n.Material.Validate(now); err != nil {
			return nil, time.Time{}, fmt.Errorf("the next CA cannot sign: %w", err)
		}
		return n, time.Time{}, nil

	case ca.PhaseSwitchSigner:
		if rot.Kind == ca.RotateIntermediate {
			return m.finish(now, st), time.Time{}, nil
		}
		n := enter(ca.PhaseWaitLeaves)
		switched := rot.SwitchedAt
		if switched.IsZero() {
			switched = rot.Since
		}
		// Leaves signed by the old intermediate: until the switch, and by
		// replicas that had not reloaded yet.
		n.Rotation.LeavesUntil = switched.Add(m.cfg.MaxLeafTTL + 2*m.cfg.ReloadInterval)
		return n, time.Time{}, nil

	case ca.PhaseWaitLeaves:
		if now.Before(rot.LeavesUntil) {
			return nil, rot.LeavesUntil, nil
		}
		n := enter(ca.PhaseDropOldRoot)
		root := signingRoot(st.Material)
		if root == nil {
			return nil, time.Time{}, fmt.Errorf("phase %s: the signing intermediate chains to none of the roots", st.Phase())
		}
		if len(st.Material.Roots) > 1 {
			n.SetRoots([]*x509.Certificate{root})
		}
		return n, time.Time{}, nil

	case ca.PhaseDropOldRoot:
		if ok, wake := m.bundleApplied(now, st); !ok {
			return nil, wake, nil
		}
		return m.finish(now, st), time.Time{}, nil
	}
	return nil, time.Time{}, fmt.Errorf("unknown phase %q", st.Phase())
}

// decideIdle starts a rotation when one is requested or due.
func (m *Machine) decideIdle(now time.Time, st *ca.State, req *ca.RotationRequest) (*ca.State, time.Time, error) {
	prevBlocked := m.blocked
	m.blocked, m.waiting = "", nil
	root, inter := signingRoot(st.Material), st.Material.Signer()
	var kind ca.RotationKind
	var reason string
	rootDue, interDue := m.dueAt(root), m.dueAt(inter)
	switch {
	case req != nil:
		kind = req.Kind
		if kind == "" {
			kind = ca.RotateRoot
		}
		reason = fmt.Sprintf("requested by %s (request %s)", req.By, req.ID)
	case !now.Before(rootDue):
		kind = ca.RotateRoot
		reason = fmt.Sprintf("the root reached %.0f%% of its life (it expires %s)", 100*m.cfg.Threshold, root.NotAfter.UTC().Format(time.RFC3339))
	case !now.Before(interDue):
		kind = ca.RotateIntermediate
		reason = fmt.Sprintf("the intermediate reached %.0f%% of its life (it expires %s)", 100*m.cfg.Threshold, inter.NotAfter.UTC().Format(time.RFC3339))
	default:
		return nil, minTime(rootDue, interDue), nil
	}
	if st.Material.RootKey == nil {
		m.blocked = "a " + string(kind) + " rotation is due (" + reason + ") but the root key is not in the store: the operator rotates this CA"
		if req != nil {
			n := st.Clone()
			n.Rotation.HandledRequest, n.Rotation.RequestResult = req.ID, "refused: the root key is not in the store"
			return n, time.Time{}, nil
		}
		if m.blocked != prevBlocked {
			m.log.Warn("CA rotation impossible", "reason", m.blocked)
		}
		return nil, time.Time{}, nil
	}
	if kind != ca.RotateRoot && kind != ca.RotateIntermediate {
		n := st.Clone()
		n.Rotation.HandledRequest, n.Rotation.RequestResult = req.ID, fmt.Sprintf("refused: unknown kind %q", kind)
		return n, time.Time{}, nil
	}
	n := st.Clone()
	n.Rotation = ca.Rotation{
		Kind: kind, Reason: reason, Started: now, Since: now,
		BundleVersion: st.Rotation.BundleVersion, BundleSHA256: st.Rotation.BundleSHA256,
		HandledRequest: st.Rotation.HandledRequest, RequestResult: st.Rotation.RequestResult, Last: st.Rotation.Last,
	}
	if req != nil {
		n.Rotation.HandledRequest, n.Rotation.RequestResult = req.ID, "started a "+string(kind)+" rotation"
	}
	gen := m.cfg.Generate
	gen.Now = now
	if kind == ca.RotateIntermediate {
		cert, key, err := ca.NewIntermediate(root, st.Material.RootKey, gen.TrustDomain, now, orDefault(gen.IntermediateTTL, ca.DefaultIntermediateTTL))
		if err != nil {
			return nil, time.Time{}, err
		}
		n.Material.Intermediates, n.Material.IntermediateKey = []*x509.Certificate{cert}, key
		n.Rotation.Phase, n.Rotation.SwitchedAt = ca.PhaseSwitchSigner, now
		return n, time.Time{}, nil
	}
	next, err := ca.Generate(gen)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("generating the new root: %w", err)
	}
	n.Next = next
	n.SetRoots(append(n.Material.Roots, next.Roots...))
	n.Rotation.Phase = ca.PhaseAddRoot
	return n, time.Time{}, nil
}

// renewIntermediates replaces, during a long bundle wait, the signing
// intermediate or the next one when it reaches the threshold of its life,
// each under its own root: the bundle does not change. It returns nil when
// neither is due.
func (m *Machine) renewIntermediates(now time.Time, st *ca.State) (*ca.State, error) {
	var n *ca.State
	td, ttl := m.cfg.Generate.TrustDomain, orDefault(m.cfg.Generate.IntermediateTTL, ca.DefaultIntermediateTTL)
	if root := signingRoot(st.Material); root != nil && st.Material.RootKey != nil && !now.Before(m.dueAt(st.Material.Signer())) {
		cert, key, err := ca.NewIntermediate(root, st.Material.RootKey, td, now, ttl)
		if err != nil {
			return nil, err
		}
		n = st.Clone()
		n.Material.Intermediates, n.Material.IntermediateKey = []*x509.Certificate{cert}, key
		m.log.Info("renewed the signing intermediate during the bundle wait", "serial", cert.SerialNumber.Text(16))
	}
	if !now.Before(m.dueAt(st.Next.Signer())) {
		cert, key, err := ca.NewIntermediate(st.Next.Roots[0], st.Next.RootKey, td, now, ttl)
		if err != nil {
			return nil, err
		}
		if n == nil {
			n = st.Clone()
		}
		next := *st.Next
		next.Intermediates, next.IntermediateKey = []*x509.Certificate{cert}, key
		n.Next = &next
		m.log.Info("renewed the next intermediate during the bundle wait", "serial", cert.SerialNumber.Text(16))
	}
	return n, nil
}

// finish returns st back in Idle, the rotation recorded as the last one.
func (m *Machine) finish(now time.Time, st *ca.State) *ca.State {
	n := st.Clone()
	rot := st.Rotation
	n.Rotation = ca.Rotation{
		Phase: ca.PhaseIdle, Since: now,
		BundleVersion: rot.BundleVersion, BundleSHA256: rot.BundleSHA256,
		HandledRequest: rot.HandledRequest, RequestResult: rot.RequestResult,
		Last: &ca.CompletedRotation{Kind: rot.Kind, Reason: rot.Reason, Started: rot.Started, Finished: now},
	}
	if len(rot.RequestResult) >= 7 && rot.RequestResult[:7] == "started" {
		n.Rotation.RequestResult = "completed a " + string(rot.Kind) + " rotation at " + now.UTC().Format(time.RFC3339)
	}
	return n
}

// bundleApplied says whether the agents have applied st's bundle (or the
// timeout passed), and if not when to look again.
func (m *Machine) bundleApplied(now time.Time, st *ca.State) (bool, time.Time) {
	since := st.Rotation.Since
	if wait := since.Add(m.cfg.MinBundleWait); now.Before(wait) {
		return false, wait
	}
	v := st.TrustBundleVersion()
	m.waiting = m.laggingAgents(now, st, v)
	if len(m.waiting) == 0 {
		return true, time.Time{}
	}
	if m.cfg.BundleTimeout > 0 {
		deadline := since.Add(m.cfg.BundleTimeout)
		if !now.Before(deadline) {
			m.timedOut = m.waiting
			return true, time.Time{}
		}
		return false, minTime(deadline, now.Add(m.cfg.ReloadInterval))
	}
	return false, now.Add(m.cfg.ReloadInterval)
}

// pendingRequest is st's request unless it was handled.
func pendingRequest(st *ca.State) *ca.RotationRequest {
	if st.Request == nil || st.Request.ID == "" || st.Request.ID == st.Rotation.HandledRequest {
		return nil
	}
	return st.Request
}

// dueAt is when c reaches Threshold of its life.
func (m *Machine) dueAt(c *x509.Certificate) time.Time {
	if c == nil {
		return time.Time{}
	}
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * m.cfg.Threshold))
}

// signingRoot is the root whose key signs intermediates, else the root the
// signing intermediate chains to.
func signingRoot(mat *ca.Material) *x509.Certificate {
	if mat.RootKey != nil {
		for _, r := range mat.Roots {
			if pub, ok := mat.RootKey.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(r.PublicKey) {
				return r
			}
		}
	}
	for _, r := range mat.Roots {
		if mat.Signer().CheckSignatureFrom(r) == nil {
			return r
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
