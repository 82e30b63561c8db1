package discovery

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/mesh"
)

const echoYAML = `# The echo service and two local backends.
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: demo
  annotations:
    sluice.dev/lb-policy: least_request
spec:
  ports:
  - name: grpc
    port: 50051
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-local
  namespace: demo
  labels:
    kubernetes.io/service-name: echo
addressType: IPv4
ports:
- name: grpc
  port: 50052
endpoints:
- addresses: ["127.0.0.1"]
  zone: local-a
- addresses: ["127.0.0.2"]
  conditions: {ready: false, serving: true, terminating: true}
---
# An empty document and another kind are fine.
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ignored
`

// A List, as `kubectl get -o json` prints it, with an object without a namespace.
const webJSON = `{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}},
  {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
   "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
   "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
   "endpoints": [{"addresses": ["127.0.0.1"]}]}
]}`

// fileHarness runs the file source's scans by hand and builds from its store.
type fileHarness struct {
	t     *testing.T
	dir   string
	src   *FileSource
	store *Store
	b     *builder
	mtime time.Time
}

func newFileHarness(t *testing.T) *fileHarness {
	dir := t.TempDir()
	store := NewStore()
	return &fileHarness{t: t, dir: dir, store: store, src: NewFileSource(dir, store, FileOptions{}), b: newBuilder(), mtime: time.Now()}
}

// write writes a file with a modification time later than any before, so a
// rewrite is noticed even on file systems with coarse timestamps.
func (h *fileHarness) write(name, content string) {
	h.t.Helper()
	path := filepath.Join(h.dir, name)
	require.NoError(h.t, os.WriteFile(path, []byte(content), 0o644))
	h.mtime = h.mtime.Add(time.Second)
	require.NoError(h.t, os.Chtimes(path, h.mtime, h.mtime))
}

func (h *fileHarness) scan() (*mesh.Snapshot, []Problem) {
	h.t.Helper()
	require.NoError(h.t, h.src.scan(context.Background()))
	h.src.markSynced() // as Run does after its first scan
	sb := h.store.build(h.b)
	require.True(h.t, sb.built)
	return sb.snapshot, sortProblems(append(sb.problems, sb.sourceProblems...))
}

func TestFileSourceParse(t *testing.T) {
	h := newFileHarness(t)
	h.write("echo.yaml", echoYAML)
	h.write("web.json", webJSON)
	h.write("README.md", "not a config file")
	h.write(".hidden.yaml", "{{{ not parsed")
	snap, problems := h.scan()
	assert.Empty(t, problems)
	require.Len(t, snap.Services, 2)
	echo := snap.Services[1] // sorted: default/web, demo/echo
	assert.Equal(t, "demo/echo", echo.Key().String())
	assert.Equal(t, mesh.LBLeastRequest, echo.LB.Policy)
	assert.Equal(t, []mesh.Port{{Name: "grpc", Port: 50051, Protocol: mesh.ProtocolGRPC}}, echo.Ports)
	assert.Equal(t, []mesh.Endpoint{
		{Address: "127.0.0.1", Port: 50052, Zone: "local-a", Health: mesh.Healthy},
		{Address: "127.0.0.2", Port: 50052, Health: mesh.Draining},
	}, snap.Endpoints[portKey("demo", "echo", 50051)])
	assert.Equal(t, "default/web", snap.Services[0].Key().String(), "no namespace means default")
	assert.Len(t, snap.Endpoints[portKey("default", "web", 80)], 1)
	assert.Empty(t, h.src.Errors())
}

func TestFileSourceReloadAndLastGoodState(t *testing.T) {
	h := newFileHarness(t)
	h.write("echo.yaml", echoYAML)
	h.write("web.json", webJSON)
	snap, _ := h.scan()
	require.Len(t, snap.Services, 2)

	// An unchanged directory changes nothing.
	again, _ := h.scan()
	assert.Same(t, snap, again)

	// A change is picked up.
	h.write("web.json", `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 81}]}}`)
	snap, problems := h.scan()
	assert.Empty(t, problems)
	assert.Equal(t, uint32(81), snap.Services[0].Ports[0].Port)

	// A malformed file: reported, and its last good state is kept.
	h.write("echo.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: echo\n")
	snap, problems = h.scan()
	require.Len(t, snap.Services, 2, "echo is still served from its last good state")
	assert.Len(t, snap.Endpoints[portKey("demo", "echo", 50051)], 2)
	require.Len(t, problems, 1)
	path := filepath.Join(h.dir, "echo.yaml")
	assert.Equal(t, KindFile, problems[0].Kind)
	assert.Equal(t, path, problems[0].Name)
	assert.Equal(t, ReasonParseError, problems[0].Reason)
	assert.Contains(t, problems[0].Message, "document 1")
	assert.Contains(t, problems[0].Message, "keeping the file's last good state")
	errs := h.src.Errors()
	require.Len(t, errs, 1)
	assert.Equal(t, path, errs[0].Path)
	assert.False(t, errs[0].Since.IsZero())

	// A document that decodes as YAML but is no object also fails the file.
	h.write("echo.yaml", echoYAML+"---\nkind: Service\nmetadata: {name: x}\n")
	snap, problems = h.scan()
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0].Message, "document 5")
	assert.Len(t, snap.Services, 2)

	// Fixed: the problem goes and the new content is used.
	h.write("echo.yaml", echoYAML+"---\napiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: demo}\nspec: {ports: [{port: 9}]}\n")
	snap, problems = h.scan()
	assert.Empty(t, problems)
	assert.Empty(t, h.src.Errors())
	assert.Len(t, snap.Services, 3)

	// A removed file removes its objects.
	require.NoError(t, os.Remove(filepath.Join(h.dir, "web.json")))
	snap, _ = h.scan()
	require.Len(t, snap.Services, 2)
	assert.Equal(t, "demo/echo", snap.Services[0].Key().String())
}

func TestFileSourceBrokenFromTheStart(t *testing.T) {
	h := newFileHarness(t)
	h.write("broken.yaml", "kind: [")
	h.write("web.json", webJSON)
	snap, problems := h.scan()
	assert.Len(t, snap.Services, 1, "the other files are served")
	assert.Equal(t, []string{ReasonParseError}, reasons(problems))
}

func TestFileSourceDuplicatesAndUnknownFields(t *testing.T) {
	h := newFileHarness(t)
	h.write("a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: http, port: 80}]}\n")
	h.write("b.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: http, port: 81}], colour: blue}\n")
	snap, problems := h.scan()
	require.Len(t, snap.Services, 1)
	assert.Equal(t, uint32(81), snap.Services[0].Ports[0].Port, "the file that sorts last wins")
	require.Len(t, problems, 2)
	assert.Equal(t, KindFile, problems[0].Kind)
	assert.Equal(t, filepath.Join(h.dir, "b.yaml"), problems[0].Name)
	assert.Equal(t, ReasonUnknownField, problems[0].Reason)
	assert.Contains(t, problems[0].Message, `unknown field "spec.colour"`)
	assert.Equal(t, Problem{Kind: "Service", Namespace: "default", Name: "s", Reason: ReasonDuplicateObject,
		Message: "defined in " + filepath.Join(h.dir, "a.yaml") + " and " + filepath.Join(h.dir, "b.yaml") + "; using " + filepath.Join(h.dir, "b.yaml")}, problems[1])
}

// TestFileSourceRun runs the source and a coalescer for real: the directory
// is polled and a change reaches the consumer.
func TestFileSourceRun(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo.yaml"), []byte(echoYAML), 0o644))
	store := NewStore()
	src := NewFileSource(dir, store, FileOptions{Interval: 10 * time.Millisecond})
	updates := make(chan Update, 100)
	c := NewCoalescer(store, ConsumerFunc(func(_ context.Context, u Update) { updates <- u }), CoalescerOptions{
		HoldOff: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	srcDone, cDone := make(chan error), make(chan error)
	go func() { srcDone <- src.Run(ctx) }()
	go func() { cDone <- c.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-srcDone)
		require.NoError(t, <-cDone)
	}()
	waitFor := func(ok func(Update) bool) Update {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case u := <-updates:
				if ok(u) {
					return u
				}
			case <-deadline:
				t.Fatal("no matching update")
			}
		}
	}
	u := waitFor(func(u Update) bool { return true })
	assert.Len(t, u.Snapshot.Services, 1)
	assert.True(t, src.HasSynced())

	edited := []byte(echoYAML + "---\napiVersion: v1\nkind: Service\nmetadata: {name: more, namespace: demo}\nspec: {ports: [{port: 9}]}\n")
	path := filepath.Join(dir, "echo.yaml")
	require.NoError(t, os.WriteFile(path, edited, 0o644))
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(path, later, later))
	u = waitFor(func(u Update) bool { return len(u.Snapshot.Services) == 2 })
	assert.False(t, u.EndpointsOnly)
}

func TestFileSourceMissingDirectory(t *testing.T) {
	src := NewFileSource(filepath.Join(t.TempDir(), "nope"), NewStore(), FileOptions{})
	err := src.Run(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
}
