package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Redacted stands for a private key in every text form of Material and CA.
const Redacted = "[redacted]"

// CertificateInfo is what /debug shows of a certificate.
type CertificateInfo struct {
	Subject   string    `json:"subject"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	SHA256    string    `json:"sha256"`
}

// Info describes c without anything secret (there is nothing secret in a
// certificate, but the fingerprint is what people compare).
func Info(c *x509.Certificate) CertificateInfo {
	sum := sha256.Sum256(c.Raw)
	return CertificateInfo{
		Subject:   c.Subject.String(),
		Serial:    c.SerialNumber.Text(16),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		SHA256:    hex.EncodeToString(sum[:]),
	}
}

// MaterialInfo is the redacted view of Material: certificates, and for keys
// only whether they are there.
type MaterialInfo struct {
	Roots           []CertificateInfo `json:"roots"`
	RootKey         string            `json:"rootKey"`
	Intermediates   []CertificateInfo `json:"intermediates"`
	IntermediateKey string            `json:"intermediateKey"`
}

// Info is the redacted view of m.
func (m *Material) Info() MaterialInfo {
	info := MaterialInfo{RootKey: "absent (root kept offline)", IntermediateKey: "absent"}
	for _, c := range m.Roots {
		info.Roots = append(info.Roots, Info(c))
	}
	for _, c := range m.Intermediates {
		info.Intermediates = append(info.Intermediates, Info(c))
	}
	if m.RootKey != nil {
		info.RootKey = Redacted
	}
	if m.IntermediateKey != nil {
		info.IntermediateKey = Redacted
	}
	return info
}

// String describes m with its keys redacted.
func (m *Material) String() string {
	if m == nil {
		return "<nil CA material>"
	}
	info := m.Info()
	return fmt.Sprintf("CA material{roots: %s, root key: %s, intermediates: %s, intermediate key: %s}",
		summary(info.Roots), info.RootKey, summary(info.Intermediates), info.IntermediateKey)
}

// Format makes every fmt verb (%v, %+v, %#v, %s, %x...) print String, so no
// format directive reaches the keys.
func (m *Material) Format(f fmt.State, _ rune) { io.WriteString(f, m.String()) }

// MarshalJSON renders Info.
func (m *Material) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	return json.Marshal(m.Info())
}

// LogValue renders Info in structured logs.
func (m *Material) LogValue() slog.Value {
	if m == nil {
		return slog.StringValue("<nil CA material>")
	}
	info := m.Info()
	return slog.GroupValue(
		slog.String("roots", summary(info.Roots)),
		slog.String("rootKey", info.RootKey),
		slog.String("intermediates", summary(info.Intermediates)),
		slog.String("intermediateKey", info.IntermediateKey),
	)
}

// String describes c with its keys redacted.
func (c *CA) String() string { return "CA{" + c.m.String() + "}" }

// Format prints String for every verb.
func (c *CA) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// MarshalJSON renders the redacted material.
func (c *CA) MarshalJSON() ([]byte, error) { return c.m.MarshalJSON() }

// LogValue renders the redacted material.
func (c *CA) LogValue() slog.Value { return c.m.LogValue() }

func summary(certs []CertificateInfo) string {
	s := "["
	for i, c := range certs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q serial %s until %s", c.Subject, c.Serial, c.NotAfter.Format(time.RFC3339))
	}
	return s + "]"
}
