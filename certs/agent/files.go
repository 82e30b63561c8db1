package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluice-mesh/sluice/certs/internal/atomicfile"
	"github.com/sluice-mesh/sluice/certs/wellknown"
)

// FileWriter writes the credentials to a directory for proxyless gRPC's
// file_watcher certificate provider: cert-chain.pem, key.pem (mode 0600)
// and root-cert.pem, each replaced atomically. It implements Publisher.
type FileWriter struct {
	Dir string
}

// Paths are the three files' paths.
func (w FileWriter) Paths() (certChain, key, trustBundle string) {
	return filepath.Join(w.Dir, wellknown.CertChainFile), filepath.Join(w.Dir, wellknown.KeyFile), filepath.Join(w.Dir, wellknown.TrustBundleFile)
}

// Publish writes c. The trust bundle goes first, so a peer's new
// certificate signed by a new root is never checked against only the old
// bundle; then the key and the chain. gRPC's file watcher ignores a key and
// chain that do not match and reads them again at its next refresh.
func (w FileWriter) Publish(_ context.Context, c *Credentials) error {
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return fmt.Errorf("certificate directory: %w", err)
	}
	chain, key, bundle := w.Paths()
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{bundle, c.TrustBundlePEM, 0o644},
		{key, c.KeyPEM, 0o600},
		{chain, c.ChainPEM, 0o644},
	} {
		if err := atomicfile.Write(f.path, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}
