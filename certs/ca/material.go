package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// File names of the CA material, in a directory and as Secret keys.
const (
	FileRootCert         = "root.crt"
	FileRootKey          = "root.key"
	FileIntermediateCert = "intermediate.crt"
	FileIntermediateKey  = "intermediate.key"
)

// Keys of a kubernetes.io/tls Secret (e.g. from cert-manager), accepted for an
// operator-provided intermediate: tls.crt/tls.key the intermediate, ca.crt
// the roots.
const (
	tlsSecretCert = "tls.crt"
	tlsSecretKey  = "tls.key"
	tlsSecretCA   = "ca.crt"
)

// Material is a CA: roots to trust and an intermediate to sign with.
type Material struct {
	// Roots are the trust bundle. There is usually one; during a root
	// rotation there are two.
	Roots []*x509.Certificate
	// RootKey signs new intermediates. It is nil when the operator keeps the
	// root offline and provides only an intermediate.
	RootKey crypto.Signer
	// Intermediates is the signing certificate first, then any certificates
	// between it and a root (not the root).
	Intermediates []*x509.Certificate
	// IntermediateKey signs leaves.
	IntermediateKey crypto.Signer
}

// Signer is the certificate that signs leaves.
func (m *Material) Signer() *x509.Certificate { return m.Intermediates[0] }

// Validate checks that m can sign at now: the keys match their certificates,
// the intermediate is a CA and chains to one of the roots, nothing expired.
func (m *Material) Validate(now time.Time) error {
	if len(m.Roots) == 0 {
		return errors.New("CA: no root certificate")
	}
	if len(m.Intermediates) == 0 || m.IntermediateKey == nil {
		return errors.New("CA: no intermediate certificate and key")
	}
	for _, r := range m.Roots {
		if !r.IsCA {
			return fmt.Errorf("CA: root %q is not a CA certificate", r.Subject)
		}
	}
	if m.RootKey != nil && !m.rootKeyMatches() {
		return errors.New("CA: the root key matches none of the root certificates")
	}
	sig := m.Signer()
	if !sig.IsCA || sig.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA: intermediate %q may not sign certificates (not a CA, or no certSign key usage)", sig.Subject)
	}
	if !publicKeysEqual(m.IntermediateKey.Public(), sig.PublicKey) {
		return fmt.Errorf("CA: the intermediate key does not match intermediate %q", sig.Subject)
	}
	if _, err := sig.Verify(x509.VerifyOptions{
		Roots:         m.rootPool(),
		Intermediates: pool(m.Intermediates[1:]),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("CA: intermediate %q does not chain to a root at %s: %w", sig.Subject, now.UTC().Format(time.RFC3339), err)
	}
	return nil
}

func (m *Material) rootKeyMatches() bool {
	for _, r := range m.Roots {
		if publicKeysEqual(m.RootKey.Public(), r.PublicKey) {
			return true
		}
	}
	return false
}

func (m *Material) rootPool() *x509.CertPool { return pool(m.Roots) }

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// Files returns m as PEM files (also the data of its Secret). Key files are
// PKCS #8.
func (m *Material) Files() (map[string][]byte, error) {
	files := map[string][]byte{
		FileRootCert:         EncodeCertificates(m.Roots...),
		FileIntermediateCert: EncodeCertificates(m.Intermediates...),
	}
	key, err := EncodePrivateKey(m.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
	files[FileIntermediateKey] = key
	if m.RootKey != nil {
		key, err := EncodePrivateKey(m.RootKey)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		files[FileRootKey] = key
	}
	return files, nil
}

// ParseFiles reads Material from files named as Files writes them, or from
// the keys of a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt). It does
// not validate; call Validate.
func ParseFiles(files map[string][]byte) (*Material, error) {
	certName, keyName, rootName := FileIntermediateCert, FileIntermediateKey, FileRootCert
	if _, ok := files[FileIntermediateCert]; !ok {
		if _, ok := files[tlsSecretCert]; ok {
			certName, keyName, rootName = tlsSecretCert, tlsSecretKey, tlsSecretCA
		}
	}
	var m Material
	var errs []error
	need := func(name string) []byte {
		data, ok := files[name]
		if !ok || len(data) == 0 {
			errs = append(errs, fmt.Errorf("%s is missing", name))
		}
		return data
	}
	var err error
	if data := need(rootName); data != nil {
		if m.Roots, err = ParseCertificates(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rootName, err))
		}
	}
	if data := need(certName); data != nil {
		if m.Intermediates, err = ParseCertificates(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", certName, err))
		}
	}
	if data := need(keyName); data != nil {
		if m.IntermediateKey, err = ParsePrivateKey(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", keyName, err))
		}
	}
	if data, ok := files[FileRootKey]; ok && len(data) > 0 {
		if m.RootKey, err = ParsePrivateKey(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", FileRootKey, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("CA material: %w", err)
	}
	return &m, nil
}
