package identity

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStringAndParseRoundTrip(t *testing.T) {
	id, err := New("cluster.local", "shop", "cart")
	require.NoError(t, err)
	assert.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", id.String())
	assert.Equal(t, id.String(), id.URL().String())

	back, err := Parse(id.String())
	require.NoError(t, err)
	assert.Equal(t, id, back)
}

func TestParseRejects(t *testing.T) {
	for name, s := range map[string]string{
		"other scheme":        "https://cluster.local/ns/shop/sa/cart",
		"no sa":               "spiffe://cluster.local/ns/shop",
		"extra segment":       "spiffe://cluster.local/ns/shop/sa/cart/x",
		"trailing slash":      "spiffe://cluster.local/ns/shop/sa/cart/",
		"swapped keys":        "spiffe://cluster.local/sa/shop/ns/cart",
		"uppercase domain":    "spiffe://Cluster.local/ns/shop/sa/cart",
		"port":                "spiffe://cluster.local:443/ns/shop/sa/cart",
		"query":               "spiffe://cluster.local/ns/shop/sa/cart?x=1",
		"fragment":            "spiffe://cluster.local/ns/shop/sa/cart#x",
		"user":                "spiffe://u@cluster.local/ns/shop/sa/cart",
		"empty namespace":     "spiffe://cluster.local/ns//sa/cart",
		"bad namespace":       "spiffe://cluster.local/ns/Shop_1/sa/cart",
		"percent encoded":     "spiffe://cluster.local/ns/shop/sa/ca%2Frt",
		"empty trust domain":  "spiffe:///ns/shop/sa/cart",
		"opaque":              "spiffe:cluster.local/ns/shop/sa/cart",
		"double slash inside": "spiffe://cluster.local//ns/shop/sa/cart",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(s)
			assert.Error(t, err)
		})
	}
}

func TestServiceAccountMayHaveDots(t *testing.T) {
	id, err := Parse("spiffe://example.org/ns/default/sa/build.bot")
	require.NoError(t, err)
	assert.Equal(t, "build.bot", id.ServiceAccount)
}

func TestValidateTrustDomain(t *testing.T) {
	assert.NoError(t, ValidateTrustDomain("prod_1.example-corp.org"))
	assert.Error(t, ValidateTrustDomain(""))
	assert.Error(t, ValidateTrustDomain("Example.org"))
	assert.Error(t, ValidateTrustDomain("example.org:80"))
}
