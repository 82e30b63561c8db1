package ca

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultSecretName is the Secret Sluice keeps its CA in.
const DefaultSecretName = "sluice-ca"

// SecretStore keeps the CA in a Secret of Sluice's own namespace (keys
// root.crt, root.key, intermediate.crt, intermediate.key; or, provided by
// the operator, a kubernetes.io/tls Secret whose tls.crt/tls.key is the
// intermediate and ca.crt the roots). Creation relies on the API server's
// create-if-absent: the second replica gets AlreadyExists.
type SecretStore struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

func (s SecretStore) String() string { return "Secret " + s.Namespace + "/" + s.Name }

// Load reads the Secret; a missing Secret is ErrNotFound.
func (s SecretStore) Load(ctx context.Context) (*Material, error) {
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
	return ParseFiles(sec.Data)
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
