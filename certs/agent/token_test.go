package agent

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fakeJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + ".c2ln"
}

func TestServiceAccountFromToken(t *testing.T) {
	ns, sa, err := ServiceAccountFromToken(fakeJWT(`{"aud":["sluice"],"sub":"system:serviceaccount:shop:cart"}`) + "\n")
	require.NoError(t, err)
	assert.Equal(t, "shop", ns)
	assert.Equal(t, "cart", sa)

	for _, bad := range []string{"", "abc", fakeJWT(`{"sub":"alice"}`), fakeJWT(`{"sub":"system:serviceaccount:shop"}`), fakeJWT(`not json`)} {
		_, _, err := ServiceAccountFromToken(bad)
		assert.Error(t, err, bad)
	}
}
