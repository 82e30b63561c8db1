package authn

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// TokensFile authenticates with a fixed list of tokens read from a file. It
// is for development without a cluster only: anyone who has a token gets
// that identity's certificates, for as long as the file lists it.
//
// The file is YAML (or JSON):
//
//	tokens:
//	- token: dev-token-of-cart
//	  namespace: shop
//	  serviceAccount: cart
type TokensFile struct {
	entries []tokenEntry
}

type tokensFileContent struct {
	Tokens []tokenEntry `json:"tokens"`
}

type tokenEntry struct {
	Token          string `json:"token"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

// LoadTokensFile reads path.
func LoadTokensFile(path string) (*TokensFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	var content tokensFileContent
	if err := yaml.UnmarshalStrict(data, &content); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	var errs []error
	seen := map[string]bool{}
	for i, e := range content.Tokens {
		switch {
		case e.Token == "" || e.Namespace == "" || e.ServiceAccount == "":
			errs = append(errs, fmt.Errorf("entry %d: token, namespace and serviceAccount are required", i+1))
		case seen[e.Token]:
			errs = append(errs, fmt.Errorf("entry %d: the token is listed twice", i+1))
		}
		seen[e.Token] = true
	}
	if len(content.Tokens) == 0 {
		errs = append(errs, errors.New("no tokens"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return &TokensFile{entries: content.Tokens}, nil
}

// Len is the number of tokens.
func (f *TokensFile) Len() int { return len(f.entries) }

// Authenticate looks token up, comparing in constant time.
func (f *TokensFile) Authenticate(_ context.Context, token string) (Principal, error) {
	var found *tokenEntry
	for i := range f.entries {
		if subtle.ConstantTimeCompare([]byte(f.entries[i].Token), []byte(token)) == 1 {
			found = &f.entries[i]
		}
	}
	if found == nil {
		return Principal{}, fmt.Errorf("%w: the token is not in the development tokens file", ErrUnauthenticated)
	}
	return Principal{Namespace: found.Namespace, ServiceAccount: found.ServiceAccount}, nil
}
