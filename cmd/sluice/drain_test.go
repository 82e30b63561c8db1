package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/drain"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
)

func runWaitDrainedCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runWaitDrained(context.Background(), args, &out, &errOut)
	return out.String(), err
}

func TestWaitDrainedUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"no url":              {"--namespace", "n", "--pod", "p"},
		"bad url":             {"--url", "ftp://x", "--namespace", "n", "--pod", "p"},
		"no pod":              {"--url", "http://127.0.0.1:1"},
		"pod without ns":      {"--url", "http://127.0.0.1:1", "--pod", "p"},
		"bad ip":              {"--url", "http://127.0.0.1:1", "--ip", "x"},
		"zero timeout":        {"--url", "http://127.0.0.1:1", "--namespace", "n", "--pod", "p", "--timeout", "0s"},
		"negative extra":      {"--url", "http://127.0.0.1:1", "--namespace", "n", "--pod", "p", "--extra-delay", "-1s"},
		"unexpected argument": {"--url", "http://127.0.0.1:1", "--namespace", "n", "--pod", "p", "extra"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("POD_NAME", "")
			t.Setenv("POD_NAMESPACE", "")
			t.Setenv("POD_IP", "")
			t.Setenv("SLUICE_DRAIN_URL", "")
			_, err := runWaitDrainedCLI(t, args...)
			assert.ErrorIs(t, err, errUsage)
		})
	}
}

// drainServer is the drain endpoint of a real tracker over a real xDS
// server with no proxy connected: a pod is drained as soon as the mesh no
// longer has it ready.
type drainServer struct {
	srv     *server.Server
	tracker *drain.Tracker
	url     string
}

func newDrainServer(t *testing.T) *drainServer {
	t.Helper()
	srv := server.New(server.Config{}, newTranslator(translate.Options{}, false, nil, nil), nil, nil)
	tracker := drain.NewTracker(srv, drain.Options{})
	hs := httptest.NewServer(drain.NewHandler(tracker, drain.HandlerOptions{}))
	t.Cleanup(hs.Close)
	return &drainServer{srv: srv, tracker: tracker, url: hs.URL}
}

func (d *drainServer) push(h mesh.Health) {
	snap := &mesh.Snapshot{
		Services: []*mesh.Service{{Namespace: "shop", Name: "api", Ports: []mesh.Port{{Port: 9090, Protocol: mesh.ProtocolGRPC}}}},
		Endpoints: map[mesh.PortKey][]mesh.Endpoint{
			{Namespace: "shop", Name: "api", Port: 9090}: {{Address: "10.244.1.1", Port: 9090, Health: h, Pod: "api-1"}},
		},
	}
	d.srv.OnSnapshot(context.Background(), snap, false)
	d.tracker.OnSnapshot(context.Background(), snap, false)
}

func TestWaitDrainedWaitsForTheControlPlane(t *testing.T) {
	d := newDrainServer(t)
	d.push(mesh.Healthy)
	t.Setenv("POD_NAMESPACE", "shop")
	t.Setenv("POD_NAME", "api-1")
	t.Setenv("POD_IP", "")
	t.Setenv("SLUICE_DRAIN_URL", d.url)
	go func() {
		time.Sleep(300 * time.Millisecond)
		d.push(mesh.Draining)
	}()
	start := time.Now()
	out, err := runWaitDrainedCLI(t, "--timeout", "10s", "--extra-delay", "200ms")
	require.NoError(t, err)
	assert.Contains(t, out, "shop/api-1 drained after")
	assert.Contains(t, out, "1 cluster(s)")
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "returned before the pod drained plus the extra delay")
}

func TestWaitDrainedTimesOutWithWhatIsPending(t *testing.T) {
	d := newDrainServer(t)
	d.push(mesh.Healthy)
	start := time.Now()
	_, err := runWaitDrainedCLI(t, "--url", d.url, "--namespace", "shop", "--pod", "api-1", "--timeout", "1500ms")
	require.Error(t, err)
	assert.NotErrorIs(t, err, errUsage)
	assert.Contains(t, err.Error(), "shop/api-1 not drained after")
	assert.Contains(t, err.Error(), "still ready in the EndpointSlices of shop/api")
	assert.Less(t, time.Since(start), 4*time.Second)
}

func TestWaitDrainedRetriesUnavailableReplicas(t *testing.T) {
	var calls atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, `{"error":"shutting down"}`, http.StatusServiceUnavailable)
			return
		}
		assert.Equal(t, drain.Path, r.URL.Path)
		assert.Equal(t, "10.244.1.1", r.URL.Query().Get("ip"))
		w.Write([]byte(`{"drained":true,"clusters":["c"]}`))
	}))
	defer hs.Close()
	out, err := runWaitDrainedCLI(t, "--url", hs.URL, "--ip", "10.244.1.1", "--namespace", "", "--pod", "", "--timeout", "10s")
	require.NoError(t, err)
	assert.Contains(t, out, "10.244.1.1 drained")
	assert.EqualValues(t, 3, calls.Load())
}

func TestWaitDrainedBadRequestIsNotRetried(t *testing.T) {
	var calls atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"error":"no"}`, http.StatusBadRequest)
	}))
	defer hs.Close()
	_, err := runWaitDrainedCLI(t, "--url", hs.URL, "--namespace", "n", "--pod", "p", "--timeout", "10s")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400")
	assert.EqualValues(t, 1, calls.Load())
}

func TestWaitDrainedAsksEveryAddressOfTheHost(t *testing.T) {
	first, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := first.Addr().(*net.TCPAddr).Port
	second, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	require.NoError(t, err)
	var mu sync.Mutex
	hosts := map[string]string{} // local address → Host header
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts[r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()] = r.Host
		mu.Unlock()
		w.Write([]byte(`{"drained":true}`))
	})
	for _, l := range []net.Listener{first, second} {
		s := &http.Server{Handler: h}
		go s.Serve(l)
		t.Cleanup(func() { s.Close() })
	}
	cfg := waitDrainedConfig{
		urls:        []string{"http://sluice-drain.test:" + strconv.Itoa(port)},
		target:      drain.Target{Namespace: "n", Pod: "p"},
		timeout:     10 * time.Second,
		eachAddress: true,
	}
	lookups := 0
	deps := waitDrainedDeps{client: &http.Client{}, now: time.Now, lookupHost: func(_ context.Context, host string) ([]string, error) {
		lookups++
		if lookups == 1 {
			return nil, errors.New("temporary DNS failure")
		}
		assert.Equal(t, "sluice-drain.test", host)
		return []string{"127.0.0.1", "127.0.0.2"}, nil
	}}
	msg, err := waitDrained(context.Background(), cfg, deps)
	require.NoError(t, err)
	assert.Contains(t, msg, "2 control plane replica(s)")
	want := "sluice-drain.test:" + strconv.Itoa(port)
	assert.Equal(t, map[string]string{first.Addr().String(): want, second.Addr().String(): want}, hosts)
}
