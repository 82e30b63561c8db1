package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/sluice-mesh/sluice/test/backend"
	"github.com/sluice-mesh/sluice/test/xdsclient"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

// greeterYAML is a mesh with one gRPC service whose three endpoints are
// loopback backends; down lists the addresses marked not serving.
func greeterYAML(port int, down ...string) string {
	isDown := map[string]bool{}
	for _, a := range down {
		isDown[a] = true
	}
	y := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: grpc, port: %d, appProtocol: grpc}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-1
  namespace: demo
  labels: {kubernetes.io/service-name: greeter}
addressType: IPv4
ports: [{name: grpc, port: %d}]
endpoints:
`, port, port)
	for i, addr := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		ok := !isDown[addr]
		y += fmt.Sprintf("  - {addresses: [%q], zone: zone-a, conditions: {ready: %t, serving: %t}, targetRef: {kind: Pod, namespace: demo, name: greeter-%d}}\n", addr, ok, ok, i+1)
	}
	return y
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeFileSource runs `sluice serve --config-dir` in-process and drives
// it with a real grpc-go xDS client: RPCs spread over the loopback backends,
// an endpoint marked not serving stops getting RPCs, a broken file keeps its
// last good state and is reported, and the server shuts down cleanly.
func TestServeFileSource(t *testing.T) {
	port := freePort(t)
	for i := 1; i <= 3; i++ {
		srv, err := backend.Start(backend.Config{
			Identity: backend.Identity{Pod: "greeter-" + strconv.Itoa(i), Namespace: "demo", Zone: "zone-a"},
			IP:       fmt.Sprintf("127.0.0.%d", i),
			Ports:    []backend.Port{{Name: "grpc", Port: port, Protocol: backend.GRPC}},
		})
		require.NoError(t, err)
		t.Cleanup(srv.Close)
	}
	dir := t.TempDir()
	meshFile := filepath.Join(dir, "greeter.yaml")
	require.NoError(t, os.WriteFile(meshFile, []byte(greeterYAML(port)), 0o644))

	cfg := serveConfig{
		configDir:     dir,
		xdsAddress:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		debugAddress:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		clusterDomain: "cluster.local",
		holdOff:       10 * time.Millisecond,
		maxDelay:      50 * time.Millisecond,
		logLevel:      "info",
		logFormat:     "text",
		maxMsgBytes:   4 << 20,
		shutdownGrace: 2 * time.Second,

		validateResources: true,
		pprof:             true,
	}
	require.NoError(t, cfg.validate())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "serve must stop cleanly")
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of cancellation")
		}
	}()
	debugURL := "http://" + cfg.debugAddress
	require.Eventually(t, func() bool { return httpStatus(debugURL+"/readyz") == http.StatusOK }, 10*time.Second, 20*time.Millisecond)

	cc, err := xdsclient.Dial(bootstrap.Workload{Pod: "client", Namespace: "demo", XDSAddress: cfg.xdsAddress},
		fmt.Sprintf("xds:///greeter.demo:%d", port))
	require.NoError(t, err)
	defer cc.Close()
	rpcCtx, rpcCancel := context.WithTimeout(ctx, 60*time.Second)
	defer rpcCancel()

	// Round robin only picks connected endpoints: wait until all three are.
	require.Eventually(t, func() bool {
		c, err := xdsclient.Spread(rpcCtx, cc, 30, grpc.WaitForReady(true))
		return err == nil && len(c) == 3
	}, 30*time.Second, 20*time.Millisecond, "RPCs never reached all three backends")
	counts, err := xdsclient.Spread(rpcCtx, cc, 300)
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		assert.InDelta(t, 100, counts["greeter-"+strconv.Itoa(i)], 25, "round robin over three endpoints: %s", counts)
	}

	// greeter-3 stops serving: once the change arrives it gets no RPCs.
	require.NoError(t, os.WriteFile(meshFile, []byte(greeterYAML(port, "127.0.0.3")), 0o644))
	require.Eventually(t, func() bool {
		c, err := xdsclient.Spread(rpcCtx, cc, 30)
		return err == nil && c["greeter-3"] == 0
	}, 15*time.Second, 50*time.Millisecond, "greeter-3 kept receiving RPCs after it stopped serving")
	counts, err = xdsclient.Spread(rpcCtx, cc, 200)
	require.NoError(t, err)
	assert.Zero(t, counts["greeter-3"], counts.String())
	assert.InDelta(t, 100, counts["greeter-1"], 25, counts.String())

	// A broken file is reported and its last good state is kept.
	require.NoError(t, os.WriteFile(meshFile, []byte("apiVersion: v1\nkind: Service\nmetadata: [not a map\n"), 0o644))
	require.Eventually(t, func() bool {
		var page problemsPage
		return httpJSON(debugURL+"/debug/problems", &page) == nil && len(page.Files) == 1 && page.Files[0].Path != ""
	}, 15*time.Second, 50*time.Millisecond, "/debug/problems does not report the broken file")
	counts, err = xdsclient.Spread(rpcCtx, cc, 60)
	require.NoError(t, err, "the last good state must keep serving")
	assert.Equal(t, 60, counts["greeter-1"]+counts["greeter-2"], counts.String())

	// Every translation passed the deep validator (--validate-resources).
	var page problemsPage
	require.NoError(t, httpJSON(debugURL+"/debug/problems", &page))
	for _, w := range page.Translation {
		assert.NotContains(t, w, "deep validation")
	}

	// The client shows up in /debug/proxies and its config dump.
	var proxies []map[string]any
	require.NoError(t, httpJSON(debugURL+"/debug/proxies", &proxies))
	require.Len(t, proxies, 1)
	assert.Equal(t, "client.demo", proxies[0]["id"])
	assert.Equal(t, http.StatusOK, httpStatus(debugURL+"/debug/config_dump?proxy=client.demo"))
	assert.Equal(t, http.StatusNotFound, httpStatus(debugURL+"/debug/config_dump?proxy=nobody"))
	assert.Equal(t, http.StatusOK, httpStatus(debugURL+"/debug/pprof/heap"), "--debug-pprof serves Go profiles")
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func httpJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
