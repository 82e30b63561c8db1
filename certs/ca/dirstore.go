package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/sluice-mesh/sluice/certs/internal/atomicfile"
)

// Files of a DirStore beyond the state's.
const (
	// lockFile serializes processes sharing a DirStore.
	lockFile = ".lock"
	// journalFile holds an Update in progress: the files to write and to
	// remove. A reader that finds it reads the state it describes, so an
	// Update cut short is never seen half done.
	journalFile = ".update.json"
	// FileRotationRequest holds a RotationRequest (JSON).
	FileRotationRequest = "rotation-request.json"
	// ReplicasDir holds each replica's report as <replica>.json.
	ReplicasDir = "replicas"
)

// materialFileNames are every file name material may have in a directory.
var materialFileNames = []string{FileRootCert, FileRootKey, FileIntermediateCert, FileIntermediateKey, tlsSecretCert, tlsSecretKey, tlsSecretCA}

// DirStore keeps the CA in a directory: root.crt, root.key,
// intermediate.crt, intermediate.key (and during a rotation next-*.crt/key
// and rotation.json), every file mode 0600, the directory 0700. Processes
// sharing the directory serialize on an flock. The revision compared by
// Update is a digest of the files.
type DirStore struct {
	Dir string
}

func (d DirStore) String() string { return "directory " + d.Dir }

// Load reads the material. A directory without intermediate.crt and
// intermediate.key (or without the directory) is ErrNotFound. A read-only
// directory (a mounted Secret) is fine.
func (d DirStore) Load(ctx context.Context) (*Material, error) {
	st, err := d.LoadState(ctx)
	if err != nil {
		return nil, err
	}
	return st.Material, nil
}

// LoadState reads everything stored.
func (d DirStore) LoadState(_ context.Context) (*State, error) {
	if unlock, err := d.lock(syscall.LOCK_SH, false); err != nil {
		return nil, err
	} else {
		defer unlock()
	}
	return d.read()
}

// read reads the state; the caller holds the lock.
func (d DirStore) read() (*State, error) {
	files := map[string][]byte{}
	for _, name := range slices.Concat(materialFileNames, stateFileNames) {
		data, err := os.ReadFile(filepath.Join(d.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the CA: %w", err)
		}
		files[name] = data
	}
	j, err := d.readJournal()
	if err != nil {
		return nil, err
	}
	if j != nil {
		for name, data := range j.Write {
			files[name] = data
		}
		for _, name := range j.Remove {
			delete(files, name)
		}
	}
	if !hasSigner(files) {
		return nil, fmt.Errorf("%w in %s", ErrNotFound, d.Dir)
	}
	st, err := ParseState(files)
	if err != nil {
		return nil, fmt.Errorf("the CA in %s: %w", d.Dir, err)
	}
	digest := sha256.New()
	for _, name := range sortedKeys(files) {
		fmt.Fprintf(digest, "%s\x00%d\x00", name, len(files[name]))
		digest.Write(files[name])
	}
	if data, err := os.ReadFile(filepath.Join(d.Dir, FileRotationRequest)); err == nil {
		var r RotationRequest
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", FileRotationRequest, err)
		}
		st.Request = &r
		fmt.Fprintf(digest, "request\x00%s\x00", data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the rotation request: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(d.Dir, ReplicasDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the replicas' reports: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d.Dir, ReplicasDir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		var r ReplicaReport
		if json.Unmarshal(data, &r) != nil {
			continue // a report is advisory: skip a bad one
		}
		st.Reports = append(st.Reports, r)
		fmt.Fprintf(digest, "report\x00%s\x00%s\x00", e.Name(), data)
	}
	sortReports(st.Reports)
	st.Revision = hex.EncodeToString(digest.Sum(nil))[:16]
	return st, nil
}

// journal is an Update in progress.
type journal struct {
	Write  map[string][]byte `json:"write"`
	Remove []string          `json:"remove"`
}

func (d DirStore) readJournal() (*journal, error) {
	data, err := os.ReadFile(filepath.Join(d.Dir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the CA's update journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("the CA's update journal %s: %w", journalFile, err)
	}
	return &j, nil
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
	for _, name := range []string{FileIntermediateCert, FileIntermediateKey, tlsSecretCert, journalFile} {
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

// Update writes st if the directory still holds revision st.Revision. It
// first writes a journal of the whole change, then the files, then removes
// the journal: a crash in between leaves the journal, which readers apply.
func (d DirStore) Update(_ context.Context, st *State) (string, error) {
	files, err := st.Files()
	if err != nil {
		return "", err
	}
	unlock, err := d.lock(syscall.LOCK_EX, true)
	if err != nil {
		return "", err
	}
	defer unlock()
	cur, err := d.read()
	if err != nil {
		return "", err
	}
	if cur.Revision != st.Revision {
		return "", fmt.Errorf("%w: %s", ErrConflict, d)
	}
	j := journal{Write: files}
	for _, name := range slices.Concat(materialFileNames, stateFileNames) {
		if _, ok := files[name]; !ok {
			j.Remove = append(j.Remove, name)
		}
	}
	data, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("encoding the CA's update journal: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(d.Dir, journalFile), data, 0o600); err != nil {
		return "", fmt.Errorf("storing the CA: %w", err)
	}
	if err := d.applyJournal(&j); err != nil {
		return "", err
	}
	if err := d.writeReports(st.Reports); err != nil {
		return "", err
	}
	next, err := d.read()
	if err != nil {
		return "", err
	}
	return next.Revision, nil
}

func (d DirStore) applyJournal(j *journal) error {
	for _, name := range sortedKeys(j.Write) {
		if err := atomicfile.Write(filepath.Join(d.Dir, name), j.Write[name], 0o600); err != nil {
			return fmt.Errorf("storing the CA: %w", err)
		}
	}
	for _, name := range j.Remove {
		if err := os.Remove(filepath.Join(d.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storing the CA: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(d.Dir, journalFile)); err != nil {
		return fmt.Errorf("storing the CA: %w", err)
	}
	return nil
}

// writeReports makes the replicas directory hold exactly rs.
func (d DirStore) writeReports(rs []ReplicaReport) error {
	keep := map[string]bool{}
	for _, r := range rs {
		keep[ReplicaSlot(r.Replica)+".json"] = true
		if err := d.writeJSON(filepath.Join(ReplicasDir, ReplicaSlot(r.Replica)+".json"), r); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(filepath.Join(d.Dir, ReplicasDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replicas' reports: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] && strings.HasSuffix(e.Name(), ".json") {
			if err := os.Remove(filepath.Join(d.Dir, ReplicasDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("replicas' reports: %w", err)
			}
		}
	}
	return nil
}

// RequestRotation writes rotation-request.json.
func (d DirStore) RequestRotation(_ context.Context, r RotationRequest) error {
	return d.locked(func() error { return d.writeJSON(FileRotationRequest, r) })
}

// Report writes replicas/<replica>.json.
func (d DirStore) Report(_ context.Context, r ReplicaReport) error {
	return d.locked(func() error { return d.writeJSON(filepath.Join(ReplicasDir, ReplicaSlot(r.Replica)+".json"), r) })
}

// locked runs fn under the exclusive lock of a directory holding a CA.
func (d DirStore) locked(fn func() error) error {
	if _, err := os.Stat(d.Dir); err != nil {
		return fmt.Errorf("%w in %s", ErrNotFound, d.Dir)
	}
	unlock, err := d.lock(syscall.LOCK_EX, true)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

func (d DirStore) writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	path := filepath.Join(d.Dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
