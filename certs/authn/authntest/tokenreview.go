// Package authntest fakes the API server's TokenReview for tests: a fake
// clientset whose TokenReview answers the way kube-apiserver does for the
// tokens it is given.
package authntest

import (
	"fmt"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// APIServerAudience is the audience of tokens that name none, as
// kube-apiserver's default.
const APIServerAudience = "https://kubernetes.default.svc.cluster.local"

// Token is what the fake API server knows about a token.
type Token struct {
	Namespace      string
	ServiceAccount string
	Pod            string
	// User, when set, makes the token a user's rather than a service
	// account's.
	User string
	// Audiences the token was issued for; none means the API server's.
	Audiences []string
	Expired   bool
}

// NewClientset returns a fake clientset whose TokenReviews know tokens.
func NewClientset(tokens map[string]Token) *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", Reactor(tokens))
	return c
}

// Reactor answers TokenReview creates like kube-apiserver: unknown and
// expired tokens are not authenticated, a token is authenticated only for
// the requested audiences it was issued for, and status.audiences is that
// intersection.
func Reactor(tokens map[string]Token) k8stesting.ReactionFunc {
	return func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		review.Status = status(tokens, review.Spec)
		return true, review, nil
	}
}

func status(tokens map[string]Token, spec authenticationv1.TokenReviewSpec) authenticationv1.TokenReviewStatus {
	tok, ok := tokens[spec.Token]
	if !ok {
		return authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, square/go-jose: error in cryptographic primitive]"}
	}
	if tok.Expired {
		return authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, service account token has expired]"}
	}
	tokenAuds := tok.Audiences
	if len(tokenAuds) == 0 {
		tokenAuds = []string{APIServerAudience}
	}
	wanted := spec.Audiences
	if len(wanted) == 0 {
		wanted = []string{APIServerAudience}
	}
	var both []string
	for _, a := range wanted {
		if slices.Contains(tokenAuds, a) {
			both = append(both, a)
		}
	}
	if len(both) == 0 {
		return authenticationv1.TokenReviewStatus{Error: fmt.Sprintf("[invalid bearer token, token audiences %q is invalid for the target audiences %q]", tokenAuds, wanted)}
	}
	user := authenticationv1.UserInfo{Username: tok.User}
	if tok.User == "" {
		user.Username = "system:serviceaccount:" + tok.Namespace + ":" + tok.ServiceAccount
		user.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + tok.Namespace, "system:authenticated"}
		if tok.Pod != "" {
			user.Extra = map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {tok.Pod}}
		}
	}
	return authenticationv1.TokenReviewStatus{Authenticated: true, User: user, Audiences: both}
}
