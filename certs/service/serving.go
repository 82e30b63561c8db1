package service

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
)

// servingCertificate is the service's own TLS certificate, signed by the
// current CA for the service's DNS names. It is renewed at half its life and
// when the CA changes.
type servingCertificate struct {
	current  func() *ca.CA
	dnsNames []string
	id       identity.ID
	ttl      time.Duration
	now      func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	signedBy *ca.CA
	renewAt  time.Time
}

func (s *servingCertificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.current()
	now := s.now()
	if s.cert != nil && s.signedBy == c && now.Before(s.renewAt) {
		return s.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving certificate key: %w", err)
	}
	iss, err := c.IssueServing(key.Public(), s.dnsNames, s.id, s.ttl)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	keyPEM, err := ca.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(iss.ChainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	s.cert, s.signedBy = &cert, c
	s.renewAt = now.Add(iss.Certificate.NotAfter.Sub(now) / 2)
	return s.cert, nil
}
