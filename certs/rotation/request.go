package rotation

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// NewRequest returns a request for a rotation of kind, with a fresh ID.
func NewRequest(kind ca.RotationKind, by string, now time.Time) ca.RotationRequest {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return ca.RotationRequest{
		ID:   now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]),
		Kind: kind, At: now.UTC(), By: by,
	}
}
