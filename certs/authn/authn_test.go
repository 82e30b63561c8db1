package authn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluice-mesh/sluice/certs/authn/authntest"
)

func TestTokenReview(t *testing.T) {
	client := authntest.NewClientset(map[string]authntest.Token{
		"cart":      {Namespace: "shop", ServiceAccount: "cart", Pod: "cart-7d9", Audiences: []string{"sluice"}},
		"two-auds":  {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"vault", "sluice"}},
		"expired":   {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"sluice"}, Expired: true},
		"apiserver": {Namespace: "shop", ServiceAccount: "cart"},
		"vault":     {Namespace: "shop", ServiceAccount: "cart", Audiences: []string{"vault"}},
		"alice":     {User: "alice@example.com", Audiences: []string{"sluice"}},
	})
	a := NewTokenReview(client, "sluice")
	ctx := context.Background()

	p, err := a.Authenticate(ctx, "cart")
	require.NoError(t, err)
	assert.Equal(t, Principal{Namespace: "shop", ServiceAccount: "cart", Pod: "cart-7d9"}, p)

	p, err = a.Authenticate(ctx, "two-auds")
	require.NoError(t, err)
	assert.Equal(t, "cart", p.ServiceAccount)

	for token, want := range map[string]string{
		"expired":   "expired",
		"apiserver": "invalid for the target audiences",
		"vault":     "invalid for the target audiences",
		"unknown":   "invalid bearer token",
	} {
		_, err := a.Authenticate(ctx, token)
		assert.ErrorIs(t, err, ErrUnauthenticated, token)
		assert.ErrorContains(t, err, want, token)
	}

	_, err = a.Authenticate(ctx, "alice")
	assert.ErrorIs(t, err, ErrNotServiceAccount)

	// The review asks for Sluice's audience.
	var asked []string
	for _, action := range client.Actions() {
		if ca, ok := action.(k8stesting.CreateAction); ok {
			asked = ca.GetObject().(*authenticationv1.TokenReview).Spec.Audiences
		}
	}
	assert.Equal(t, []string{"sluice"}, asked)
}

// An API server that authenticates without saying for which audiences did
// not check ours: refuse.
func TestTokenReviewRequiresAudienceInStatus(t *testing.T) {
	client := authntest.NewClientset(nil)
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		r := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		r.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "system:serviceaccount:shop:cart"}}
		return true, r, nil
	})
	_, err := NewTokenReview(client, "sluice").Authenticate(context.Background(), "t")
	assert.ErrorIs(t, err, ErrUnauthenticated)
	assert.ErrorContains(t, err, `audience "sluice"`)
}

// When the API server cannot be asked, the error is not a refusal: the
// caller should retry rather than be told its token is bad.
func TestTokenReviewAPIErrorIsNotARefusal(t *testing.T) {
	client := authntest.NewClientset(nil)
	client.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	_, err := NewTokenReview(client, "sluice").Authenticate(context.Background(), "t")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrUnauthenticated)
	assert.NotErrorIs(t, err, ErrNotServiceAccount)
}

func TestParseServiceAccountUser(t *testing.T) {
	p, ok := parseServiceAccountUser("system:serviceaccount:shop:cart")
	assert.True(t, ok)
	assert.Equal(t, Principal{Namespace: "shop", ServiceAccount: "cart"}, p)
	for _, u := range []string{"alice", "system:serviceaccount:shop", "system:serviceaccount::cart", "system:serviceaccount:shop:", "system:serviceaccount:a:b:c", "system:node:n1"} {
		_, ok := parseServiceAccountUser(u)
		assert.False(t, ok, u)
	}
}

func TestTokensFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
tokens:
- token: tok-cart
  namespace: shop
  serviceAccount: cart
- token: tok-web
  namespace: shop
  serviceAccount: web
`), 0o600))
	f, err := LoadTokensFile(path)
	require.NoError(t, err)
	assert.Equal(t, 2, f.Len())
	p, err := f.Authenticate(context.Background(), "tok-web")
	require.NoError(t, err)
	assert.Equal(t, Principal{Namespace: "shop", ServiceAccount: "web"}, p)
	_, err = f.Authenticate(context.Background(), "tok-")
	assert.ErrorIs(t, err, ErrUnauthenticated)
	_, err = f.Authenticate(context.Background(), "")
	assert.ErrorIs(t, err, ErrUnauthenticated)

	for name, content := range map[string]string{
		"empty":         "tokens: []",
		"missing field": "tokens: [{token: a, namespace: shop}]",
		"duplicate":     "tokens: [{token: a, namespace: s, serviceAccount: x}, {token: a, namespace: s, serviceAccount: y}]",
		"unknown field": "tokens: [{token: a, namespace: s, serviceAccount: x, role: admin}]",
	} {
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		_, err := LoadTokensFile(path)
		assert.Error(t, err, name)
	}
}
