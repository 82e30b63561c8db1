package discovery

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
)

// DefaultFileInterval is how often the file source checks its directory.
const DefaultFileInterval = time.Second

// FileOptions configure a FileSource. Zero values take defaults.
type FileOptions struct {
	// Interval between checks of the directory (DefaultFileInterval).
	Interval time.Duration
	Logger   *slog.Logger
}

// FileError is a file of the file source that does not parse. Its last
// good state, if it ever had one, is still served.
type FileError struct {
	Path  string
	Error string
	// Since is when the file was first seen broken (this content or earlier).
	Since time.Time
}

// FileSource consumes a directory of Kubernetes YAML or JSON files and
// produces store changes: the embedded default of `sluice serve
// --config-dir`. It reads every *.yaml, *.yml and *.json file directly in
// the directory (not in subdirectories; names starting with "." are
// skipped), with any number of documents per file, and keeps the Services,
// EndpointSlices, Pods, Namespaces and Nodes, and the Gateway API's
// HTTPRoutes, GRPCRoutes (v1) and ReferenceGrants; other kinds are ignored.
// Nothing is validated as the API server would: EndpointSlices may point at
// any address, 127.0.0.1 included, and no Namespace or Node needs to exist.
//
// It polls the directory every Interval and re-reads a file whose size or
// modification time changed. A file that does not parse is reported (a log
// line, a ParseError problem naming the file, Errors) and the last good
// state of that file is kept; the other files are unaffected.
type FileSource struct {
	dir        string
	store      *Store
	opts       FileOptions
	markSynced func()
	synced     atomic.Bool

	// scanMu serialises scans; files and applied belong to the scan.
	scanMu  sync.Mutex
	files   map[string]*fileState
	applied map[objectRef]runtime.Object
	scanned bool

	mu     sync.Mutex
	errors []FileError
}

// fileState is what the source knows about one file.
type fileState struct {
	size    int64
	modTime time.Time
	content []byte
	// objects are from the last content that parsed.
	objects  []runtime.Object
	warnings []string
	err      error
	errSince time.Time
}

// NewFileSource returns a source that fills store from the files in dir.
// Call Run to start it.
func NewFileSource(dir string, store *Store, opts FileOptions) *FileSource {
	if opts.Interval <= 0 {
		opts.Interval = DefaultFileInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &FileSource{
		dir:        dir,
		store:      store,
		opts:       opts,
		markSynced: store.RegisterSource("file:" + dir),
		files:      map[string]*fileState{},
		applied:    map[objectRef]runtime.Object{},
	}
}

// Run reads the directory, marks the source synced, and re-reads changes
// until ctx is done. It fails at once if the directory cannot be read at
// start; later, a directory that cannot be read is logged and the last
// state is kept.
func (s *FileSource) Run(ctx context.Context) error {
	if err := s.scan(ctx); err != nil {
		return err
	}
	s.synced.Store(true)
	s.markSynced()
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	var lastErr error // logged once, not every poll
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		err := s.scan(ctx)
		if err != nil && (lastErr == nil || err.Error() != lastErr.Error()) {
			s.opts.Logger.ErrorContext(ctx, "discovery: reading config directory; keeping the last state", "err", err)
		}
		lastErr = err
	}
}

// HasSynced reports whether the directory has been read once.
func (s *FileSource) HasSynced() bool { return s.synced.Load() }

// Errors returns the files that do not parse, by path. For /debug.
func (s *FileSource) Errors() []FileError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errors)
}

// scan reads the changed files of the directory and applies the result to
// the store.
func (s *FileSource) scan(ctx context.Context) error {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	changed := false
	present := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isConfigFile(name) {
			continue
		}
		path := filepath.Join(s.dir, name)
		info, err := os.Stat(path) // follows symlinks (ConfigMap volumes)
		if err != nil || info.IsDir() {
			continue
		}
		present[path] = true
		if s.read(ctx, path, info) {
			changed = true
		}
	}
	for path := range s.files {
		if !present[path] {
			delete(s.files, path)
			s.opts.Logger.InfoContext(ctx, "discovery: config file removed", "path", path)
			changed = true
		}
	}
	if changed || !s.scanned {
		s.apply()
		s.scanned = true
	}
	return nil
}

// read re-reads a file whose size or modification time changed and reports
// whether its state changed.
func (s *FileSource) read(ctx context.Context, path string, info os.FileInfo) bool {
	st := s.files[path]
	if st != nil && st.size == info.Size() && st.modTime.Equal(info.ModTime()) {
		return false
	}
	if st == nil {
		st = &fileState{}
		s.files[path] = st
	}
	st.size, st.modTime = info.Size(), info.ModTime()
	data, err := os.ReadFile(path)
	if err != nil {
		st.content = nil // re-decode once readable, even if unchanged
		return s.fail(ctx, st, path, err)
	}
	if st.content != nil && bytes.Equal(data, st.content) {
		return false // touched, not changed
	}
	st.content = data
	decoded, err := decodeFile(data)
	if err != nil {
		return s.fail(ctx, st, path, err)
	}
	st.objects, st.warnings, st.err = decoded.objects, decoded.warnings, nil
	s.opts.Logger.InfoContext(ctx, "discovery: config file loaded", "path", path,
		"objects", len(decoded.objects), "otherKinds", decoded.skipped)
	for _, w := range decoded.warnings {
		s.opts.Logger.WarnContext(ctx, "discovery: config file has fields that were ignored", "path", path, "warning", w)
	}
	return true
}

// fail records that a file does not parse, keeping its last good objects.
func (s *FileSource) fail(ctx context.Context, st *fileState, path string, err error) bool {
	if st.err == nil {
		st.errSince = time.Now()
	}
	st.err = err
	s.opts.Logger.ErrorContext(ctx, "discovery: config file does not parse; keeping its last good state",
		"path", path, "err", err, "lastGoodObjects", len(st.objects))
	return true
}

// apply merges the files' objects (a file that sorts later wins a
// duplicate) and writes the difference to the store.
func (s *FileSource) apply() {
	var problems []Problem
	var errs []FileError
	merged := map[objectRef]runtime.Object{}
	from := map[objectRef]string{}
	for _, path := range slices.Sorted(maps.Keys(s.files)) {
		st := s.files[path]
		if st.err != nil {
			problems = append(problems, Problem{Kind: KindFile, Name: path, Reason: ReasonParseError,
				Message: st.err.Error() + "; keeping the file's last good state"})
			errs = append(errs, FileError{Path: path, Error: st.err.Error(), Since: st.errSince})
		}
		for _, w := range st.warnings {
			problems = append(problems, Problem{Kind: KindFile, Name: path, Reason: ReasonUnknownField,
				Message: w + "; the fields were ignored"})
		}
		for _, obj := range st.objects {
			ref := refOf(obj)
			if prev, dup := from[ref]; dup {
				problems = append(problems, Problem{Kind: ref.kind, Namespace: ref.namespace, Name: ref.name,
					Reason: ReasonDuplicateObject, Message: fmt.Sprintf("defined in %s and %s; using %s", prev, path, path)})
			}
			merged[ref], from[ref] = obj, path
		}
	}
	for ref := range s.applied {
		if _, ok := merged[ref]; !ok {
			_ = s.store.Delete(ref.kind, ref.namespace, ref.name) // kinds are the store's
		}
	}
	for ref, obj := range merged {
		if s.applied[ref] != obj {
			_ = s.store.Upsert(obj) // types are the store's
		}
	}
	s.applied = merged
	slices.SortFunc(errs, func(a, b FileError) int { return cmp.Compare(a.Path, b.Path) })
	s.mu.Lock()
	s.errors = errs
	s.mu.Unlock()
	s.store.SetSourceProblems("file:"+s.dir, problems)
}

func isConfigFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}
