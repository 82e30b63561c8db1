package drain

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())
	srv := httptest.NewServer(NewHandler(env.tracker, HandlerOptions{}))
	defer srv.Close()

	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"", http.StatusBadRequest, "need a pod"},
		{"?pod=api-a", http.StatusBadRequest, "without a namespace"},
		{"?namespace=default", http.StatusBadRequest, "without a pod"},
		{"?ip=nope", http.StatusBadRequest, "ip \\\"nope\\\""},
		{"?namespace=default&pod=api-a&timeout=soon", http.StatusBadRequest, "positive duration"},
		{"?namespace=default&pod=api-a&timeout=-1s", http.StatusBadRequest, "positive duration"},
		// Ready: times out with the EndpointSlice as the pending item.
		{"?namespace=default&pod=api-a&timeout=100ms", http.StatusGatewayTimeout, "still ready in the EndpointSlices"},
		{"?namespace=default&pod=nobody&timeout=1s", http.StatusOK, `"drained": true`},
	} {
		code, body := get(t, srv.URL+Path+tc.query)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %s; want %d with %q", tc.query, code, body, tc.code, tc.want)
		}
	}
	if code, _ := get(t, srv.URL+"/other"); code != http.StatusNotFound {
		t.Errorf("other path: %d", code)
	}
	resp, err := http.Post(srv.URL+Path+"?namespace=default&pod=api-a", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}

	// A wait in progress answers 200 once the proxy ACKs.
	type answer struct {
		code int
		st   Status
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Get(srv.URL + Path + "?namespace=default&pod=api-a&timeout=20s")
		if err != nil {
			done <- answer{}
			return
		}
		defer resp.Body.Close()
		var st Status
		_ = json.NewDecoder(resp.Body).Decode(&st)
		done <- answer{resp.StatusCode, st}
	}()
	env.push(aDraining())
	upd := g.recv()
	time.Sleep(100 * time.Millisecond)
	g.ack(upd)
	a := <-done
	if a.code != http.StatusOK || !a.st.Drained || a.st.Pod != "api-a" || len(a.st.Clusters) != 1 {
		t.Fatalf("drain wait: %d %+v", a.code, a.st)
	}
}

func TestHandlerTimeoutNamesThePendingProxies(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	g := env.sotw(grpcNode("grpc-1"), apiCluster)
	g.ack(g.recv())
	env.push(aDraining())
	_ = g.recv() // held
	srv := httptest.NewServer(NewHandler(env.tracker, HandlerOptions{}))
	defer srv.Close()
	code, body := get(t, srv.URL+Path+"?namespace=default&pod=api-a&timeout=200ms")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusGatewayTimeout || st.Drained || st.PendingTotal != 1 || st.Pending[0].Proxy != "grpc-1" || st.Pending[0].Stream == "" {
		t.Fatalf("%d %s", code, body)
	}
}

func TestHandlerBoundsWaitsAndEndsThemOnStop(t *testing.T) {
	env := newTestEnv(t)
	env.push(steady())
	srv := httptest.NewServer(NewHandler(env.tracker, HandlerOptions{MaxWaits: 1}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- env.tracker.Run(ctx) }()

	first := make(chan int, 1)
	go func() {
		code, _ := get(t, srv.URL+Path+"?namespace=default&pod=api-a&timeout=1m")
		first <- code
	}()
	waitFor(t, "the first wait", func() bool {
		m, _ := env.reg.Gather()
		for _, mf := range m {
			if mf.GetName() == "sluice_drain_waits_in_progress" {
				return mf.GetMetric()[0].GetGauge().GetValue() == 1
			}
		}
		return false
	})
	if code, body := get(t, srv.URL+Path+"?namespace=default&pod=api-b&timeout=1m"); code != http.StatusTooManyRequests {
		t.Errorf("second wait: %d %s", code, body)
	}
	cancel()
	select {
	case code := <-first:
		if code != http.StatusServiceUnavailable {
			t.Errorf("wait at shutdown: %d, want 503", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait not ended by the tracker stopping")
	}
	<-ran
}
