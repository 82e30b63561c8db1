package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteModeAndContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	require.NoError(t, Write(p, []byte("one"), 0o600))
	require.NoError(t, Write(p, []byte("two"), 0o644))

	got, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "two", string(got))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left behind")
}

func TestWriteFailsInMissingDirectory(t *testing.T) {
	err := Write(filepath.Join(t.TempDir(), "nope", "f"), []byte("x"), 0o600)
	assert.Error(t, err)
}

// A reader racing with writers sees one complete version or the other,
// never a truncated or mixed file.
func TestReadersNeverSeePartialWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cert.pem")
	a := bytes.Repeat([]byte("a"), 64<<10)
	b := bytes.Repeat([]byte("b"), 96<<10)
	require.NoError(t, Write(p, a, 0o644))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			data := a
			if i%2 == 0 {
				data = b
			}
			if err := Write(p, data, 0o644); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read a partial file of %d bytes", len(got))
		}
		reads++
		select {
		case <-done:
			assert.Positive(t, reads)
			return
		default:
		}
	}
}
