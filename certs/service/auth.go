package service

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/metadata"
)

// bearerToken returns the token of the call's "authorization: Bearer <token>"
// metadata.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	switch len(values) {
	case 0:
		return "", errors.New("no bearer token: send the metadata 'authorization: Bearer <projected ServiceAccount token>'")
	case 1:
	default:
		return "", errors.New("several authorization metadata values; send one")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("the authorization metadata is not 'Bearer <token>'")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", errors.New("the bearer token is empty")
	}
	return token, nil
}
