package ca

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sluice-mesh/sluice/certs/internal/atomicfile"
)

// lockFile serializes processes sharing a DirStore.
const lockFile = ".lock"

// DirStore keeps the CA in a directory: root.crt, root.key,
// intermediate.crt, intermediate.key, every file mode 0600, the directory
// 0700. Processes sharing the directory serialize on an flock.
type DirStore struct {
	Dir string
}

func (d DirStore) String() string { return "directory " + d.Dir }

// Load reads the material. A directory without intermediate.crt and
// intermediate.key (or without the directory) is ErrNotFound. A read-only
// directory (a mounted Secret) is fine.
func (d DirStore) Load(_ context.Context) (*Material, error) {
	if unlock, err := d.lock(syscall.LOCK_SH, false); err != nil {
		return nil, err
	} else {
		defer unlock()
	}
	files := map[string][]byte{}
	for _, name := range []string{FileRootCert, FileRootKey, FileIntermediateCert, FileIntermediateKey, tlsSecretCert, tlsSecretKey, tlsSecretCA} {
		data, err := os.ReadFile(filepath.Join(d.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the CA: %w", err)
		}
		files[name] = data
	}
	if !hasSigner(files) {
		return nil, fmt.Errorf("%w in %s", ErrNotFound, d.Dir)
	}
	return ParseFiles(files)
}

// Create writes m, creating the directory, unless a CA is already there.
func (d DirStore) Create(_ context.Context, m *Material) error {
	files, err := m.Files()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("creating the CA directory: %w", err)
	}
	unlock, err := d.lock(syscall.LOCK_EX, true)
	if err != nil {
		return err
	}
	defer unlock()
	for _, name := range []string{FileIntermediateCert, FileIntermediateKey, tlsSecretCert} {
		if _, err := os.Stat(filepath.Join(d.Dir, name)); err == nil {
			return fmt.Errorf("%w in %s", ErrExists, d.Dir)
		}
	}
	// intermediate.crt last: until it is there, Load finds no CA.
	for _, name := range []string{FileRootKey, FileRootCert, FileIntermediateKey, FileIntermediateCert} {
		data, ok := files[name]
		if !ok {
			continue
		}
		if err := atomicfile.Write(filepath.Join(d.Dir, name), data, 0o600); err != nil {
			return fmt.Errorf("storing the CA: %w", err)
		}
	}
	return nil
}

// lock takes an flock on the directory's lock file. Without create, a
// missing lock file (a read-only or fresh directory) means no lock is needed
// because no writer ever used the directory.
func (d DirStore) lock(how int, create bool) (unlock func(), err error) {
	flags := os.O_RDONLY
	if create {
		flags = os.O_RDWR | os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(d.Dir, lockFile), flags, 0o600)
	if !create && errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("locking the CA directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the CA directory: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// hasSigner says whether files hold an intermediate certificate (in either
// naming).
func hasSigner(files map[string][]byte) bool {
	_, ours := files[FileIntermediateCert]
	_, tls := files[tlsSecretCert]
	return ours || tls
}
