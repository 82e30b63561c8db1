package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ServiceAccountFromToken reads the namespace and service account named by
// a Kubernetes ServiceAccount token (its "sub" claim,
// system:serviceaccount:<ns>:<name>), without verifying it: it only tells
// the agent which identity to ask for. The certificate service verifies the
// token.
func ServiceAccountFromToken(token string) (namespace, serviceAccount string, err error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return "", "", errors.New("the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", fmt.Errorf("the token's claims: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", "", fmt.Errorf("the token's claims: %w", err)
	}
	rest, ok := strings.CutPrefix(claims.Sub, "system:serviceaccount:")
	if ok {
		namespace, serviceAccount, ok = strings.Cut(rest, ":")
	}
	if !ok || namespace == "" || serviceAccount == "" {
		return "", "", fmt.Errorf("the token's subject %q is not a service account", claims.Sub)
	}
	return namespace, serviceAccount, nil
}
