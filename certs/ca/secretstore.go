package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// DefaultSecretName is the Secret Sluice keeps its CA in.
const DefaultSecretName = "sluice-ca"

// Annotations of the CA Secret.
const (
	// AnnotationRotationRequest holds a RotationRequest (JSON): `sluice ca
	// rotate` sets it, the leader acts upon it.
	AnnotationRotationRequest = "ca.sluice.dev/rotation-request"
	// ReplicaAnnotationPrefix starts the annotations holding each
	// replica's ReplicaReport (JSON).
	ReplicaAnnotationPrefix = "replica.ca.sluice.dev/"
)

// SecretStore keeps the CA in a Secret of Sluice's own namespace (keys
// root.crt, root.key, intermediate.crt, intermediate.key, and during a
// rotation next-*.crt/key and rotation.json; or, provided by the operator,
// a kubernetes.io/tls Secret whose tls.crt/tls.key is the intermediate and
// ca.crt the roots). Creation relies on the API server's create-if-absent
// (the second replica gets AlreadyExists), Update on its resourceVersion
// check (the second gets Conflict). Rotation requests and replica reports
// are annotations, written with merge patches so that they never conflict
// with each other.
type SecretStore struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

func (s SecretStore) String() string { return "Secret " + s.Namespace + "/" + s.Name }

// Load reads the Secret; a missing Secret is ErrNotFound.
func (s SecretStore) Load(ctx context.Context) (*Material, error) {
	st, err := s.LoadState(ctx)
	if err != nil {
		return nil, err
	}
	return st.Material, nil
}

// LoadState reads the Secret with its annotations; a missing Secret is
// ErrNotFound. The revision is the Secret's resourceVersion.
func (s SecretStore) LoadState(ctx context.Context) (*State, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, s)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s, err)
	}
	if !hasSigner(sec.Data) {
		return nil, fmt.Errorf("%s has neither %s nor %s", s, FileIntermediateCert, tlsSecretCert)
	}
	st, err := ParseState(sec.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	var errs []error
	for key, value := range sec.Annotations {
		switch {
		case key == AnnotationRotationRequest:
			var r RotationRequest
			if err := json.Unmarshal([]byte(value), &r); err != nil {
				errs = append(errs, fmt.Errorf("annotation %s: %w", key, err))
				continue
			}
			st.Request = &r
		case strings.HasPrefix(key, ReplicaAnnotationPrefix):
			var r ReplicaReport
			if err := json.Unmarshal([]byte(value), &r); err != nil {
				// A replica's report is advisory: skip a bad one.
				continue
			}
			st.Reports = append(st.Reports, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	sortReports(st.Reports)
	st.Revision = sec.ResourceVersion
	st.secret = sec
	return st, nil
}

// Create creates the Secret; if it exists already, ErrExists.
func (s SecretStore) Create(ctx context.Context, m *Material) error {
	files, err := m.Files()
	if err != nil {
		return err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.Name,
			Namespace: s.Namespace,
			Labels: map[string]string{
				"app.kubernetes.io/name":      "sluice",
				"app.kubernetes.io/component": "ca",
			},
			Annotations: map[string]string{
				"sluice.dev/description": "Sluice's CA: the mesh trust root and the intermediate that signs workload certificates. Deleting it makes Sluice generate a new CA that no workload trusts yet.",
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: files,
	}
	_, err = s.Client.CoreV1().Secrets(s.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%w: %s", ErrExists, s)
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", s, err)
	}
	return nil
}

// Update writes st into the Secret read by LoadState (or read now, if st
// did not come from this store), failing with ErrConflict when the
// Secret's resourceVersion is no longer st.Revision. The data is replaced
// by st.Files, in Sluice's key names; the replica annotations by
// st.Reports.
func (s SecretStore) Update(ctx context.Context, st *State) (string, error) {
	base := st.secret
	if base == nil {
		cur, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", s, err)
		}
		if cur.ResourceVersion != st.Revision {
			return "", fmt.Errorf("%w: %s", ErrConflict, s)
		}
		base = cur
	}
	if base.Type == corev1.SecretTypeTLS {
		return "", fmt.Errorf("%s is a %s Secret provided by the operator: Sluice does not rewrite it", s, corev1.SecretTypeTLS)
	}
	files, err := st.Files()
	if err != nil {
		return "", err
	}
	sec := base.DeepCopy()
	sec.ResourceVersion = st.Revision
	sec.Data = files
	for key := range sec.Annotations {
		if strings.HasPrefix(key, ReplicaAnnotationPrefix) {
			delete(sec.Annotations, key)
		}
	}
	for _, r := range st.Reports {
		value, err := json.Marshal(r)
		if err != nil {
			return "", fmt.Errorf("encoding the report of %s: %w", r.Replica, err)
		}
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		sec.Annotations[ReplicaAnnotationPrefix+ReplicaSlot(r.Replica)] = string(value)
	}
	out, err := s.Client.CoreV1().Secrets(s.Namespace).Update(ctx, sec, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return "", fmt.Errorf("%w: %s", ErrConflict, s)
	}
	if err != nil {
		return "", fmt.Errorf("updating %s: %w", s, err)
	}
	return out.ResourceVersion, nil
}

// RequestRotation sets the request annotation.
func (s SecretStore) RequestRotation(ctx context.Context, r RotationRequest) error {
	return s.annotate(ctx, AnnotationRotationRequest, r)
}

// Report sets the replica's annotation.
func (s SecretStore) Report(ctx context.Context, r ReplicaReport) error {
	return s.annotate(ctx, ReplicaAnnotationPrefix+ReplicaSlot(r.Replica), r)
}

func (s SecretStore) annotate(ctx context.Context, key string, v any) error {
	value, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding annotation %s: %w", key, err)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: string(value)}}})
	if err != nil {
		return fmt.Errorf("encoding annotation %s: %w", key, err)
	}
	_, err = s.Client.CoreV1().Secrets(s.Namespace).Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s", ErrNotFound, s)
	}
	if err != nil {
		return fmt.Errorf("annotating %s: %w", s, err)
	}
	return nil
}
