package rotation

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// Status is the rotation's /debug page.
type Status struct {
	Replica string `json:"replica"`
	Leader  bool   `json:"leader"`
	// Mode is "automatic", or why this replica never rotates.
	Mode        string          `json:"mode"`
	Phase       ca.Phase        `json:"phase"`
	Kind        ca.RotationKind `json:"kind,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Started     time.Time       `json:"started,omitzero"`
	PhaseSince  time.Time       `json:"phaseSince,omitzero"`
	LeavesUntil time.Time       `json:"leavesUntil,omitzero"`
	// TrustBundleVersion is the version of the roots served.
	TrustBundleVersion uint64 `json:"trustBundleVersion"`
	// Roots are the trust bundle, Intermediate the signer, Next the
	// intermediate a root rotation will switch to.
	Roots        []Certificate `json:"roots"`
	Intermediate Certificate   `json:"intermediate"`
	Next         *Certificate  `json:"next,omitempty"`
	// LaggingAgents counts the agents not on TrustBundleVersion, on every
	// replica reporting; WaitingFor names those the current wait waits for.
	LaggingAgents int      `json:"laggingAgents"`
	WaitingFor    []string `json:"waitingFor,omitempty"`
	// Replicas are the replicas' reports (this one's included).
	Replicas      []ca.ReplicaReport    `json:"replicas"`
	Request       *ca.RotationRequest   `json:"request,omitempty"`
	RequestResult string                `json:"requestResult,omitempty"`
	LastRotation  *ca.CompletedRotation `json:"lastRotation,omitempty"`
	Blocked       string                `json:"blocked,omitempty"`
	LastError     string                `json:"lastError,omitempty"`
	Policy        Policy                `json:"policy"`
}

// Certificate is a CA certificate in Status.
type Certificate struct {
	ca.CertificateInfo
	// Role: "signing" (its key signs), "new", "old" or "trusted".
	Role string `json:"role"`
	// LifeUsed is the fraction of its life gone, e.g. "12.5%".
	LifeUsed string `json:"lifeUsed"`
	// RotateAt is when it reaches the threshold.
	RotateAt time.Time `json:"rotateAt"`
}

// Policy is the configuration that decides transitions.
type Policy struct {
	Threshold      float64 `json:"threshold"`
	MaxLeafTTL     string  `json:"maxLeafTTL"`
	MinBundleWait  string  `json:"minBundleWait"`
	BundleTimeout  string  `json:"bundleTimeout"`
	ReloadInterval string  `json:"reloadInterval"`
}

// Status returns the current Status.
func (m *Machine) Status() Status {
	v := m.view.Load()
	st := v.state
	now := m.cfg.Clock.Now()
	s := Status{
		Replica: m.cfg.Replica, Leader: m.cfg.IsLeader(), Mode: "automatic",
		Phase: st.Phase(), Kind: st.Rotation.Kind, Reason: st.Rotation.Reason, Started: st.Rotation.Started,
		PhaseSince: st.Rotation.Since, LeavesUntil: st.Rotation.LeavesUntil,
		TrustBundleVersion: st.TrustBundleVersion(),
		LaggingAgents:      v.lagging, WaitingFor: v.waiting,
		Replicas: st.Reports, Request: st.Request, RequestResult: st.Rotation.RequestResult, LastRotation: st.Rotation.Last,
		Blocked: v.blocked, LastError: v.lastErr,
		Policy: Policy{
			Threshold: m.cfg.Threshold, MaxLeafTTL: m.cfg.MaxLeafTTL.String(), MinBundleWait: m.cfg.MinBundleWait.String(),
			BundleTimeout: m.cfg.BundleTimeout.String(), ReloadInterval: m.cfg.ReloadInterval.String(),
		},
	}
	if m.cfg.ReadOnly {
		s.Mode = "read-only: the operator provides the CA and rotates it"
	} else if st.Material.RootKey == nil {
		s.Mode = "manual: the root key is not in the store, so Sluice cannot make intermediates"
	}
	signing := signingRoot(st.Material)
	for _, r := range st.Material.Roots {
		role := "trusted"
		switch {
		case r == signing:
			role = "signing"
		case st.Next != nil && r.Equal(st.Next.Roots[0]):
			role = "new"
		case st.Phase() != ca.PhaseIdle:
			role = "old"
		}
		s.Roots = append(s.Roots, m.certificate(r, role, now))
	}
	s.Intermediate = m.certificate(st.Material.Signer(), "signing", now)
	if st.Next != nil {
		next := m.certificate(st.Next.Signer(), "new", now)
		s.Next = &next
	}
	return s
}

func (m *Machine) certificate(c *x509.Certificate, role string, now time.Time) Certificate {
	life := c.NotAfter.Sub(c.NotBefore)
	used := 100 * float64(now.Sub(c.NotBefore)) / float64(life)
	return Certificate{CertificateInfo: ca.Info(c), Role: role, LifeUsed: fmt.Sprintf("%.1f%%", used), RotateAt: m.dueAt(c).UTC()}
}

// Debug returns Status, for a debug.Section's Data.
func (m *Machine) Debug() any { return m.Status() }
