package agent

import (
	"context"
	"os"
	"path/filepath"

	"github.com/sluice-mesh/sluice/certs/internal/atomicfile"
)

// BootstrapFile writes a fixed file, the gRPC xDS bootstrap, when
// credentials are published. Listed after the FileWriter, it appears only
// once the certificate files it names exist, so an application can wait for
// it. It implements Publisher.
type BootstrapFile struct {
	Path    string
	Content []byte
}

// Publish writes the file (atomically, mode 0644).
func (b BootstrapFile) Publish(context.Context, *Credentials) error {
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(b.Path, b.Content, 0o644)
}
