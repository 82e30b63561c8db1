// Package authn tells the certificate service who is calling: it turns a
// bearer token into the Kubernetes ServiceAccount it belongs to, with a
// TokenReview against the API server, or, for development without a
// cluster, with a file of tokens.
package authn

import (
	"context"
	"errors"
)

var (
	// ErrUnauthenticated: the token proves nothing (expired, for another
	// audience, unknown, revoked). Other errors mean the check itself failed.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrNotServiceAccount: the token is valid but not a service account's,
	// so it names no workload identity.
	ErrNotServiceAccount = errors.New("not a service account")
)

// Principal is the ServiceAccount a token belongs to.
type Principal struct {
	Namespace      string
	ServiceAccount string
	// Pod is the pod the token was issued to when the API server says so
	// (bound tokens); for logs only.
	Pod string
}

// Authenticator checks bearer tokens.
type Authenticator interface {
	// Authenticate returns the token's principal. A refused token is an
	// error wrapping ErrUnauthenticated or ErrNotServiceAccount; any other
	// error means the token could not be checked.
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, token string) (Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (Principal, error) {
	return f(ctx, token)
}
