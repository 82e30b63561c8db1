package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Phase is where a rotation of the CA is (certs/rotation drives it).
type Phase string

// The phases of a rotation. A root rotation goes through all of them in
// order; an intermediate rotation goes Idle → SwitchSigner → Idle.
const (
	// PhaseIdle: no rotation in progress.
	PhaseIdle Phase = "Idle"
	// PhaseAddRoot: a new root and intermediate were made and the new root
	// added to the trust bundle; the old intermediate still signs.
	PhaseAddRoot Phase = "AddRoot"
	// PhaseWaitBundle: waiting until every connected agent has applied the
	// bundle holding both roots.
	PhaseWaitBundle Phase = "WaitBundle"
	// PhaseSwitchSigner: the new intermediate signs.
	PhaseSwitchSigner Phase = "SwitchSigner"
	// PhaseWaitLeaves: waiting the longest leaf lifetime, so that every leaf
	// the old chain signed has expired.
	PhaseWaitLeaves Phase = "WaitLeaves"
	// PhaseDropOldRoot: the trust bundle is the new root only; waiting for
	// the agents to apply it.
	PhaseDropOldRoot Phase = "DropOldRoot"
)

// Phases lists every phase in the order a root rotation takes them.
var Phases = []Phase{PhaseIdle, PhaseAddRoot, PhaseWaitBundle, PhaseSwitchSigner, PhaseWaitLeaves, PhaseDropOldRoot}

// RotationKind says what a rotation replaces.
type RotationKind string

const (
	// RotateRoot replaces the root and the intermediate: the trust bundle
	// changes twice.
	RotateRoot RotationKind = "root"
	// RotateIntermediate replaces the intermediate under the same root: the
	// trust bundle does not change.
	RotateIntermediate RotationKind = "intermediate"
)

// Rotation is the progress of a CA rotation, stored as FileRotation
// (JSON) beside the material, so that a restart in any phase resumes.
type Rotation struct {
	Phase Phase        `json:"phase"`
	Kind  RotationKind `json:"kind,omitempty"`
	// Reason is why the rotation started: a request or an expiry.
	Reason string `json:"reason,omitempty"`
	// Started is when the rotation left Idle; Since when Phase was entered.
	Started time.Time `json:"started,omitzero"`
	Since   time.Time `json:"since,omitzero"`
	// SwitchedAt is when the new intermediate started signing (root
	// rotations); LeavesUntil when the last leaf of the old chain expires.
	SwitchedAt  time.Time `json:"switchedAt,omitzero"`
	LeavesUntil time.Time `json:"leavesUntil,omitzero"`
	// BundleVersion numbers the trust bundle; BundleSHA256 is the digest
	// of the roots it numbers (written by State.Files), so that roots
	// changed behind Sluice's back get a new version.
	BundleVersion uint64 `json:"bundleVersion"`
	BundleSHA256  string `json:"bundleSHA256,omitempty"`
	// HandledRequest is the ID of the last rotation request acted upon,
	// RequestResult what was done about it.
	HandledRequest string `json:"handledRequest,omitempty"`
	RequestResult  string `json:"requestResult,omitempty"`
	// Last is the last completed rotation.
	Last *CompletedRotation `json:"last,omitempty"`
}

// CompletedRotation records a finished rotation.
type CompletedRotation struct {
	Kind     RotationKind `json:"kind"`
	Reason   string       `json:"reason"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
}

// RotationRequest asks the leader for a rotation (`sluice ca rotate`).
type RotationRequest struct {
	ID   string       `json:"id"`
	Kind RotationKind `json:"kind"`
	At   time.Time    `json:"at"`
	// By says who asked, for people.
	By string `json:"by,omitempty"`
}

// ReplicaReport is what one replica of Sluice says about the agents
// connected to it, so that the leader can wait for all of them.
type ReplicaReport struct {
	Replica string    `json:"replica"`
	At      time.Time `json:"at"`
	// BundleVersion is the trust bundle version the replica serves.
	BundleVersion uint64 `json:"bundleVersion"`
	// Agents are connected; Lagging of them have not applied BundleVersion.
	Agents  int `json:"agents"`
	Lagging int `json:"lagging"`
	// LaggingAgents names some of them (at most MaxReportedAgents).
	LaggingAgents []string `json:"laggingAgents,omitempty"`
}

// MaxReportedAgents bounds ReplicaReport.LaggingAgents.
const MaxReportedAgents = 10

// State is everything a Store keeps.
type State struct {
	// Material signs now; its roots are the trust bundle.
	Material *Material
	// Next is the material a root rotation switches to (its one root is
	// already in Material.Roots); nil outside AddRoot and WaitBundle.
	Next     *Material
	Rotation Rotation
	// Request is the latest rotation request, nil when none was made.
	// Update does not write it (RequestRotation does).
	Request *RotationRequest
	// Reports are the replicas' reports; Update writes exactly these.
	Reports []ReplicaReport
	// Revision is the store's version of this state, compared by Update.
	Revision string

	// secret is what SecretStore read, updated in place by Update.
	secret *corev1.Secret
}

// Clone returns a copy of s that can be changed without changing s (the
// certificates and keys are shared: they are never modified).
func (s *State) Clone() *State {
	c := *s
	if s.Material != nil {
		m := *s.Material
		m.Roots = slices.Clone(m.Roots)
		m.Intermediates = slices.Clone(m.Intermediates)
		c.Material = &m
	}
	if s.Request != nil {
		r := *s.Request
		c.Request = &r
	}
	if s.Rotation.Last != nil {
		l := *s.Rotation.Last
		c.Rotation.Last = &l
	}
	c.Reports = slices.Clone(s.Reports)
	return &c
}

// TrustBundleVersion is the version of Material's roots: the recorded
// BundleVersion (at least 1), plus one when the roots are not those it was
// recorded for (an operator replaced them).
func (s *State) TrustBundleVersion() uint64 {
	v := max(s.Rotation.BundleVersion, 1)
	if s.Rotation.BundleSHA256 != "" && s.Material != nil && s.Rotation.BundleSHA256 != BundleDigest(s.Material.Roots) {
		v++
	}
	return v
}

// Phase is the rotation phase, Idle when none was recorded.
func (s *State) Phase() Phase {
	if s.Rotation.Phase == "" {
		return PhaseIdle
	}
	return s.Rotation.Phase
}

// BundleDigest is the hex SHA-256 of the roots as a PEM bundle.
func BundleDigest(roots []*x509.Certificate) string {
	sum := sha256.Sum256(EncodeCertificates(roots...))
	return hex.EncodeToString(sum[:])
}

// Files of the state beyond the material's (see Material.Files).
const (
	// The next material: a root rotation's new root and intermediate before
	// the intermediate signs.
	FileNextRootCert         = "next-root.crt"
	FileNextRootKey          = "next-root.key"
	FileNextIntermediateCert = "next-intermediate.crt"
	FileNextIntermediateKey  = "next-intermediate.key"
	// FileRotation is Rotation as JSON.
	FileRotation = "rotation.json"
)

const nextPrefix = "next-"

// Files returns s's material, next material and rotation as files (also
// the data of its Secret). The rotation records the digest of the roots.
func (s *State) Files() (map[string][]byte, error) {
	files, err := s.Material.Files()
	if err != nil {
		return nil, err
	}
	if s.Next != nil {
		next, err := s.Next.Files()
		if err != nil {
			return nil, fmt.Errorf("next CA: %w", err)
		}
		for name, data := range next {
			files[nextPrefix+name] = data
		}
	}
	rot := s.Rotation
	if rot.Phase == "" {
		rot.Phase = PhaseIdle
	}
	rot.BundleVersion = s.TrustBundleVersion()
	rot.BundleSHA256 = BundleDigest(s.Material.Roots)
	data, err := json.MarshalIndent(rot, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the rotation: %w", err)
	}
	files[FileRotation] = append(data, '\n')
	return files, nil
}

// stateFileNames are the files a State is written to (beyond the material's
// names in either naming).
var stateFileNames = []string{FileNextRootCert, FileNextRootKey, FileNextIntermediateCert, FileNextIntermediateKey, FileRotation}

// ParseState reads the material, the next material when present, and the
// rotation (Idle when absent) from files named as State.Files writes them.
// Request, Reports and Revision are left for the store to fill.
func ParseState(files map[string][]byte) (*State, error) {
	m, err := ParseFiles(files)
	if err != nil {
		return nil, err
	}
	s := &State{Material: m, Rotation: Rotation{Phase: PhaseIdle}}
	next := map[string][]byte{}
	for name, data := range files {
		if rest, ok := strings.CutPrefix(name, nextPrefix); ok {
			next[rest] = data
		}
	}
	if len(next) > 0 {
		if s.Next, err = ParseFiles(next); err != nil {
			return nil, fmt.Errorf("next CA: %w", err)
		}
	}
	if data, ok := files[FileRotation]; ok && len(data) > 0 {
		if err := json.Unmarshal(data, &s.Rotation); err != nil {
			return nil, fmt.Errorf("%s: %w", FileRotation, err)
		}
		if !slices.Contains(Phases, s.Rotation.Phase) {
			return nil, fmt.Errorf("%s: unknown phase %q", FileRotation, s.Rotation.Phase)
		}
	}
	return s, nil
}

// ReplicaSlot is a replica's name as an annotation name and a file name:
// the name itself when it fits (63 characters at most, alphanumerics, '-',
// '_', '.'), else a digest of it.
func ReplicaSlot(name string) string {
	if name != "" && !strings.Contains(name, "/") && len(validation.IsQualifiedName(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "r-" + hex.EncodeToString(sum[:8])
}

func sortReports(rs []ReplicaReport) {
	slices.SortFunc(rs, func(a, b ReplicaReport) int { return strings.Compare(a.Replica, b.Replica) })
}

// SetRoots makes roots the trust bundle under the next version.
func (s *State) SetRoots(roots []*x509.Certificate) {
	v := s.TrustBundleVersion() + 1
	s.Material.Roots = roots
	s.Rotation.BundleVersion, s.Rotation.BundleSHA256 = v, BundleDigest(roots)
}
