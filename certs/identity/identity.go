// Package identity is the SPIFFE identity of a meshed workload: one per
// Kubernetes ServiceAccount, spiffe://<trust-domain>/ns/<namespace>/sa/<name>.
// It has no crypto and no Kubernetes client: the CA signs these IDs into
// URI SANs, the certificate service compares them with the caller's token,
// and translation writes them into SAN matchers.
package identity

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Scheme is the URI scheme of SPIFFE IDs.
const Scheme = "spiffe"

// DefaultTrustDomain is the trust domain when none is configured.
const DefaultTrustDomain = "cluster.local"

// ID is the identity of a Kubernetes ServiceAccount in a trust domain.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// New returns the ID of service account sa in namespace ns, or why those
// names cannot form one.
func New(trustDomain, ns, sa string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Namespace: ns, ServiceAccount: sa}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	return id, nil
}

// String is the SPIFFE ID, spiffe://<trust-domain>/ns/<namespace>/sa/<name>.
func (id ID) String() string {
	return Scheme + "://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the SPIFFE ID as the URI SAN of a certificate.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: Scheme, Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate says why id is not a valid identity, or nil.
func (id ID) Validate() error {
	var errs []error
	if err := ValidateTrustDomain(id.TrustDomain); err != nil {
		errs = append(errs, err)
	}
	if msgs := validation.IsDNS1123Label(id.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", id.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Subdomain(id.ServiceAccount); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("service account %q: %s", id.ServiceAccount, strings.Join(msgs, "; ")))
	}
	return errors.Join(errs...)
}

// ValidateTrustDomain checks td against the SPIFFE spec: lowercase letters,
// digits, dots, dashes and underscores, at most 255 characters.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain %q is longer than 255 characters", td)
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: only lowercase letters, digits, '.', '-' and '_' are allowed", td)
		}
	}
	return nil
}

// Parse parses a SPIFFE ID of the form spiffe://<td>/ns/<ns>/sa/<sa>.
// Anything else, including other SPIFFE paths, is an error.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return FromURL(u)
}

// FromURL is Parse for an already parsed URI (a certificate's URI SAN).
func FromURL(u *url.URL) (ID, error) {
	s := u.String()
	switch {
	case u.Scheme != Scheme:
		return ID{}, fmt.Errorf("%q is not a SPIFFE ID: scheme is not %q", s, Scheme)
	case u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return ID{}, fmt.Errorf("SPIFFE ID %q has an opaque part, user info, a port, a query or a fragment", s)
	case u.RawPath != "":
		return ID{}, fmt.Errorf("SPIFFE ID %q has percent-encoded characters", s)
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "ns" || parts[3] != "sa" {
		return ID{}, fmt.Errorf("SPIFFE ID %q: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[2], ServiceAccount: parts[4]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}
