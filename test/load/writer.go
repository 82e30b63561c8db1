package load

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime"
)

// Writer writes the world where the control plane reads it. Calls for
// different services may run concurrently; calls for one service do not.
type Writer interface {
	// Setup writes what every service needs (namespaces, nodes).
	Setup(ctx context.Context, w *World) error
	// CreateServices writes services with their pods and slices.
	CreateServices(ctx context.Context, w *World, svcs []*Service) error
	// UpdateEndpoints rewrites the EndpointSlice of s (readiness flips).
	UpdateEndpoints(ctx context.Context, w *World, s *Service) error
	// RestartPod deletes pod old of s, creates repl and rewrites the slice.
	RestartPod(ctx context.Context, w *World, s *Service, old, repl *Pod) error
	// DeleteService removes s, its pods and slice.
	DeleteService(ctx context.Context, w *World, s *Service) error
	// SetRoute creates or updates r's HTTPRoute; DeleteRoute removes it.
	SetRoute(ctx context.Context, w *World, r *Route) error
	DeleteRoute(ctx context.Context, w *World, r *Route) error
	// Source returns the `sluice serve` flags that read what was written.
	Source() []string
}

// FileWriter writes one JSON List per service (Service, Pods,
// EndpointSlice) into a directory for `sluice serve --config-dir`. Files
// are replaced atomically (written under a dot name, then renamed), so the
// file source never reads half a file.
type FileWriter struct {
	Dir string
}

var _ Writer = (*FileWriter)(nil)

// Setup writes the namespaces and nodes.
func (f *FileWriter) Setup(_ context.Context, w *World) error {
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return fmt.Errorf("file writer: %w", err)
	}
	var objs []runtime.Object
	for _, ns := range w.Namespaces {
		objs = append(objs, namespaceObject(ns))
	}
	for _, z := range zones {
		objs = append(objs, nodeObject(z.node, z.zone))
	}
	return f.write("base.json", objs)
}

// CreateServices writes one file per service.
func (f *FileWriter) CreateServices(ctx context.Context, w *World, svcs []*Service) error {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, s := range svcs {
		g.Go(func() error { return f.writeService(s) })
	}
	return g.Wait()
}

// UpdateEndpoints rewrites the service's file.
func (f *FileWriter) UpdateEndpoints(_ context.Context, _ *World, s *Service) error {
	return f.writeService(s)
}

// RestartPod rewrites the service's file.
func (f *FileWriter) RestartPod(_ context.Context, _ *World, s *Service, _, _ *Pod) error {
	return f.writeService(s)
}

// DeleteService removes the service's file.
func (f *FileWriter) DeleteService(_ context.Context, _ *World, s *Service) error {
	if err := os.Remove(filepath.Join(f.Dir, serviceFile(s))); err != nil {
		return fmt.Errorf("file writer: %w", err)
	}
	return nil
}

// SetRoute writes the route's file.
func (f *FileWriter) SetRoute(_ context.Context, _ *World, r *Route) error {
	return f.write(routeFile(r), []runtime.Object{httpRouteObject(r)})
}

// DeleteRoute removes the route's file.
func (f *FileWriter) DeleteRoute(_ context.Context, _ *World, r *Route) error {
	if err := os.Remove(filepath.Join(f.Dir, routeFile(r))); err != nil {
		return fmt.Errorf("file writer: %w", err)
	}
	return nil
}

func routeFile(r *Route) string { return "route." + r.Service.Namespace + "." + routeName(r) + ".json" }

// Source is --config-dir.
func (f *FileWriter) Source() []string { return []string{"--config-dir", f.Dir} }

func serviceFile(s *Service) string { return s.Namespace + "." + s.Name + ".json" }

func (f *FileWriter) writeService(s *Service) error {
	objs := []runtime.Object{serviceObject(s, true)}
	for _, p := range s.Pods {
		objs = append(objs, podObject(s, p))
	}
	objs = append(objs, sliceObject(s))
	return f.write(serviceFile(s), objs)
}

// write replaces file name with a List of objs.
func (f *FileWriter) write(name string, objs []runtime.Object) error {
	items := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("file writer: %w", err)
		}
		items = append(items, b)
	}
	data, err := json.Marshal(struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}{"v1", "List", items})
	if err != nil {
		return fmt.Errorf("file writer: %w", err)
	}
	tmp := filepath.Join(f.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("file writer: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(f.Dir, name)); err != nil {
		return fmt.Errorf("file writer: %w", err)
	}
	return nil
}

// serviceLocks serializes writes per service for writers that keep
// per-object state.
type serviceLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (l *serviceLocks) lock(key string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*sync.Mutex{}
	}
	m := l.locks[key]
	if m == nil {
		m = &sync.Mutex{}
		l.locks[key] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}
