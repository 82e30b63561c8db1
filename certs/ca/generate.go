package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// Default lifetimes of a generated CA.
const (
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 365 * 24 * time.Hour
	// DefaultBackdate is how far before now certificates start, so that a
	// peer whose clock is a little behind accepts them.
	DefaultBackdate = 5 * time.Minute
)

// GenerateOptions are the parameters of a new CA.
type GenerateOptions struct {
	// TrustDomain goes into the subjects' organizational unit, for people.
	TrustDomain string
	Now         time.Time
	// RootTTL and IntermediateTTL default to 10 years and 1 year.
	RootTTL         time.Duration
	IntermediateTTL time.Duration
}

// Generate returns a new self-signed ECDSA P-256 root and an intermediate it
// signed.
func Generate(opts GenerateOptions) (*Material, error) {
	if opts.RootTTL <= 0 {
		opts.RootTTL = DefaultRootTTL
	}
	if opts.IntermediateTTL <= 0 {
		opts.IntermediateTTL = DefaultIntermediateTTL
	}
	if opts.IntermediateTTL > opts.RootTTL {
		return nil, fmt.Errorf("intermediate lifetime %s is longer than the root's %s", opts.IntermediateTTL, opts.RootTTL)
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               caSubject("Sluice root CA", opts.TrustDomain),
		NotBefore:             opts.Now.Add(-DefaultBackdate),
		NotAfter:              opts.Now.Add(opts.RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("signing root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing root: %w", err)
	}
	inter, interKey, err := NewIntermediate(root, rootKey, opts.TrustDomain, opts.Now, opts.IntermediateTTL)
	if err != nil {
		return nil, err
	}
	return &Material{
		Roots:           []*x509.Certificate{root},
		RootKey:         rootKey,
		Intermediates:   []*x509.Certificate{inter},
		IntermediateKey: interKey,
	}, nil
}

// NewIntermediate returns a new ECDSA P-256 intermediate signed by root,
// valid from now (backdated) for ttl but never past the root.
func NewIntermediate(root *x509.Certificate, rootKey crypto.Signer, trustDomain string, now time.Time, ttl time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating intermediate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(ttl)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               caSubject("Sluice intermediate CA", trustDomain),
		NotBefore:             now.Add(-DefaultBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing intermediate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing intermediate: %w", err)
	}
	return cert, key, nil
}

func caSubject(cn, trustDomain string) pkix.Name {
	n := pkix.Name{CommonName: cn, Organization: []string{"Sluice"}}
	if trustDomain != "" {
		n.OrganizationalUnit = []string{trustDomain}
	}
	return n
}

// randomSerial is a positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
