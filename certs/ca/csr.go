package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"

	"github.com/sluice-mesh/sluice/certs/identity"
)

// CSRProblem says what is wrong with a CSR; it is also the reason label of
// the refusals metric.
type CSRProblem string

// The ways a CSR is refused.
const (
	CSRTooLarge       CSRProblem = "csr_too_large"
	CSRMalformed      CSRProblem = "csr_malformed"
	CSRBadSignature   CSRProblem = "csr_bad_signature"
	CSRUnsupportedKey CSRProblem = "csr_unsupported_key"
	CSRNoURISAN       CSRProblem = "csr_no_uri_san"
	CSRSeveralSANs    CSRProblem = "csr_several_sans"
	CSRNonURISAN      CSRProblem = "csr_non_uri_san"
	CSRBadSPIFFEID    CSRProblem = "csr_bad_spiffe_id"
)

// CSRError is a CSR refused for Problem.
type CSRError struct {
	Problem CSRProblem
	Detail  string
}

func (e *CSRError) Error() string { return "CSR refused (" + string(e.Problem) + "): " + e.Detail }

func csrError(p CSRProblem, format string, args ...any) *CSRError {
	return &CSRError{Problem: p, Detail: fmt.Sprintf(format, args...)}
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// ParseCSR parses a PEM CSR of at most maxBytes and checks it: one
// CERTIFICATE REQUEST block and nothing else, a valid self-signature, an
// ECDSA P-256/P-384 or RSA 2048-4096 key, and exactly one SAN, a URI that is
// a Kubernetes SPIFFE ID. It returns the request and that ID, or a
// *CSRError. Whether the ID is the caller's is for the caller to check.
func ParseCSR(pemBytes []byte, maxBytes int) (*x509.CertificateRequest, identity.ID, error) {
	if len(pemBytes) > maxBytes {
		return nil, identity.ID{}, csrError(CSRTooLarge, "%d bytes, the limit is %d", len(pemBytes), maxBytes)
	}
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, identity.ID{}, csrError(CSRMalformed, "no PEM block found")
	}
	if block.Type != pemCSR {
		return nil, identity.ID{}, csrError(CSRMalformed, "PEM block is %q, want %q", block.Type, pemCSR)
	}
	if b, _ := pem.Decode(rest); b != nil {
		return nil, identity.ID{}, csrError(CSRMalformed, "more than one PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, identity.ID{}, csrError(CSRMalformed, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, identity.ID{}, csrError(CSRBadSignature, "the CSR's signature does not verify with its key: %v", err)
	}
	if err := checkKey(csr); err != nil {
		return nil, identity.ID{}, err
	}
	id, err := csrID(csr)
	if err != nil {
		return nil, identity.ID{}, err
	}
	return csr, id, nil
}

func checkKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return csrError(CSRUnsupportedKey, "ECDSA curve %s; use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n >= 2048 && n <= 4096 {
			return nil
		}
		return csrError(CSRUnsupportedKey, "RSA key of %d bits; use 2048 to 4096", k.N.BitLen())
	default:
		return csrError(CSRUnsupportedKey, "%s key; use ECDSA P-256", csr.PublicKeyAlgorithm)
	}
}

// csrID returns the one URI SAN as an ID. It counts the SAN extension's
// entries itself, because Go's parser skips name types it does not know.
func csrID(csr *x509.CertificateRequest) (identity.ID, error) {
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return identity.ID{}, csrError(CSRNonURISAN, "the CSR has DNS, IP or email SANs (%v %v %v); only a SPIFFE URI SAN is allowed",
			csr.DNSNames, csr.IPAddresses, csr.EmailAddresses)
	}
	entries := 0
	sanExtensions := 0
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		sanExtensions++
		n, err := countGeneralNames(ext.Value)
		if err != nil {
			return identity.ID{}, csrError(CSRMalformed, "subjectAltName extension: %v", err)
		}
		entries += n
	}
	switch {
	case entries == 0:
		return identity.ID{}, csrError(CSRNoURISAN, "the CSR has no SAN; put the SPIFFE ID spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> in a URI SAN")
	case entries > 1 || sanExtensions > 1:
		return identity.ID{}, csrError(CSRSeveralSANs, "the CSR has %d SANs; exactly one, the SPIFFE ID, is allowed", entries)
	case len(csr.URIs) != 1:
		return identity.ID{}, csrError(CSRNonURISAN, "the CSR's SAN is not a URI; only a SPIFFE URI SAN is allowed")
	}
	id, err := identity.FromURL(csr.URIs[0])
	if err != nil {
		return identity.ID{}, csrError(CSRBadSPIFFEID, "%v", err)
	}
	return id, nil
}

// countGeneralNames counts the entries of a GeneralNames SEQUENCE.
func countGeneralNames(der []byte) (int, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return 0, err
	}
	if len(rest) > 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence {
		return 0, fmt.Errorf("not a SEQUENCE of names")
	}
	n := 0
	for b := seq.Bytes; len(b) > 0; n++ {
		var v asn1.RawValue
		if b, err = asn1.Unmarshal(b, &v); err != nil {
			return 0, err
		}
	}
	return n, nil
}
