package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// No text form of the material or the CA contains a key.
func TestKeysAreRedactedEverywhere(t *testing.T) {
	m := newTestMaterial(t)
	c, err := New(m, Options{Now: fixed(t0)})
	require.NoError(t, err)
	files, err := m.Files()
	require.NoError(t, err)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("ca", "material", m, "ca", c)
	jm, err := json.Marshal(m)
	require.NoError(t, err)
	jc, err := json.Marshal(map[string]any{"ca": c})
	require.NoError(t, err)

	texts := map[string]string{
		"%v": fmt.Sprintf("%v", m), "%+v": fmt.Sprintf("%+v", m), "%#v": fmt.Sprintf("%#v", m),
		"%s": fmt.Sprintf("%s", m), "%x": fmt.Sprintf("%x", m), "ca %+v": fmt.Sprintf("%+v", c),
		"ca %#v": fmt.Sprintf("%#v", c), "json": string(jm), "ca json": string(jc), "slog": logs.String(),
	}
	for name, text := range texts {
		assert.Contains(t, text, Redacted, name)
		for _, s := range []string{keyBody(files[FileRootKey]), keyBody(files[FileIntermediateKey])} {
			assert.NotContains(t, text, s, name)
		}
		for _, k := range [][]byte{scalar(t, m.RootKey), scalar(t, m.IntermediateKey)} {
			assert.NotContains(t, text, new(big.Int).SetBytes(k).String(), name+": private scalar in decimal")
			assert.NotContains(t, text, hex.EncodeToString(k), name+": private scalar in hex")
		}
		assert.Contains(t, text, "Sluice root CA", name)
	}
}

func scalar(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := k.(*ecdsa.PrivateKey).Bytes()
	require.NoError(t, err)
	return b
}

func keyBody(p []byte) string {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	return strings.Join(lines[1:len(lines)-1], "")[:40]
}
