package authn

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultAudience is the audience of the projected tokens workloads present
// to Sluice.
const DefaultAudience = "sluice"

const (
	serviceAccountPrefix = "system:serviceaccount:"
	extraPodName         = "authentication.kubernetes.io/pod-name"
)

// TokenReview asks the API server (authentication.k8s.io/v1 TokenReview)
// whether a token is valid for Sluice's audience and whose it is. Needs RBAC:
// create tokenreviews.
type TokenReview struct {
	client   kubernetes.Interface
	audience string
}

// NewTokenReview returns an authenticator accepting tokens for audience.
func NewTokenReview(client kubernetes.Interface, audience string) *TokenReview {
	return &TokenReview{client: client, audience: audience}
}

// Authenticate reviews token.
func (r *TokenReview) Authenticate(ctx context.Context, token string) (Principal, error) {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
		Token:     token,
		Audiences: []string{r.audience},
	}}
	res, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return Principal{}, fmt.Errorf("TokenReview: %w", err)
	}
	st := res.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "the API server did not authenticate the token"
		}
		return Principal{}, fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
	}
	// An API server answers with the audiences the token is valid for among
	// those asked; an empty list means it did not check them.
	if !slices.Contains(st.Audiences, r.audience) {
		return Principal{}, fmt.Errorf("%w: the token is not valid for audience %q (the API server says %q)", ErrUnauthenticated, r.audience, st.Audiences)
	}
	p, ok := parseServiceAccountUser(st.User.Username)
	if !ok {
		return Principal{}, fmt.Errorf("%w: the token is user %q's", ErrNotServiceAccount, st.User.Username)
	}
	if pods := st.User.Extra[extraPodName]; len(pods) == 1 {
		p.Pod = pods[0]
	}
	return p, nil
}

// parseServiceAccountUser parses "system:serviceaccount:<ns>:<name>".
func parseServiceAccountUser(user string) (Principal, bool) {
	rest, ok := strings.CutPrefix(user, serviceAccountPrefix)
	if !ok {
		return Principal{}, false
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return Principal{}, false
	}
	return Principal{Namespace: ns, ServiceAccount: name}, true
}
