package load

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHarnessInProcess runs the harness end to end, small: a file-source
// mesh of 12 services, the control plane in process, 10 Envoy-like delta
// proxies and 10 gRPC-like SotW proxies, every change kind and a
// control-plane restart; then checks the figures are real.
func TestHarnessInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr, err := FreeAddress()
	if err != nil {
		t.Fatal(err)
	}
	b := &Bench{
		World:      NewWorld("cluster.local", 3, true),
		Writer:     &FileWriter{Dir: t.TempDir()},
		CP:         &InProcess{},
		XDSAddress: addr,
	}
	if err := b.Populate(ctx, 12, 4); err != nil {
		t.Fatal(err)
	}
	report := &Report{Started: time.Now(), Machine: ThisMachine(1), Source: "file"}
	for _, c := range []Case{
		{Name: "10x12/delta", Fleet: FleetOptions{Proxies: 10, Client: ClientEnvoy, Delta: true, NodeFormat: NodeSluice, StreamsPerConn: 4}},
		{Name: "10x12/sotw-grpc", Fleet: FleetOptions{Proxies: 10, Client: ClientGRPC, NodeFormat: NodeIstio, StreamsPerConn: 4, GRPCDeps: 3}},
	} {
		c.Flips, c.NewServices, c.RouteChanges, c.Burst, c.BurstWindow, c.Restart = 4, 1, 2, 3, 100*time.Millisecond, true
		c.Settle, c.Timeout = 20*time.Millisecond, 20*time.Second
		res, err := b.Run(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		report.Cases = append(report.Cases, res)
		checkCase(t, c, res)
	}
	// The world is back to 12 services (new ones were removed), with the
	// restarted pods' new addresses.
	if n := len(b.World.Services()); n != 12 {
		t.Errorf("world has %d services after the cases, want 12", n)
	}

	var md bytes.Buffer
	report.WriteMarkdown(&md)
	for _, want := range []string{"| 10x12/delta | envoy | delta | 12×4 | 10 | endpoint flip | 4 | 10 |", KindNewService, KindPodRestart, KindRouteWeight} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	dir := t.TempDir()
	path, err := report.WriteJSON(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil || len(back.Cases) != 2 || filepath.Dir(path) != dir {
		t.Errorf("JSON %s: %v, %d cases", path, err, len(back.Cases))
	}
}

func checkCase(t *testing.T, c Case, res *CaseResult) {
	t.Helper()
	if res.Connect == nil || res.Connect.Seconds <= 0 || res.Connect.RxBytes <= 0 {
		t.Errorf("%s: connect %+v", c.Name, res.Connect)
	}
	if res.Steady.RSSBytes <= 0 || res.Steady.HeapInuseBytes <= 0 {
		t.Errorf("%s: memory %+v", c.Name, res.Steady)
	}
	for kind, n := range map[string]int{KindEndpointFlip: c.Flips, KindNewService: c.NewServices, KindRouteWeight: c.RouteChanges, KindPodRestart: c.Burst} {
		s := res.Changes[kind]
		if s == nil || s.Count != n {
			t.Errorf("%s: %s: %+v, want %d changes", c.Name, kind, s, n)
			continue
		}
		// Envoy-like proxies all subscribe; gRPC-like ones only to the
		// services they call.
		if s.Proxies < 1 || s.Proxies > c.Fleet.Proxies || (c.Fleet.Client == ClientEnvoy && s.Proxies != c.Fleet.Proxies) {
			t.Errorf("%s: %s reached %d proxies", c.Name, kind, s.Proxies)
		}
		// A change goes through the coalescer's hold-off (20 ms) at least.
		if s.P50ms < 20 || s.Maxms < s.P99ms || s.P99ms < s.P50ms {
			t.Errorf("%s: %s latencies p50 %.1f p99 %.1f max %.1f ms", c.Name, kind, s.P50ms, s.P99ms, s.Maxms)
		}
		if s.RxBytesPerChange <= 0 {
			t.Errorf("%s: %s: no bytes received", c.Name, kind)
		}
	}
	if res.Burst == nil || res.Burst.Restarts != c.Burst || res.Burst.TotalSeconds <= 0 {
		t.Errorf("%s: burst %+v", c.Name, res.Burst)
	}
	if res.Restart == nil || res.Restart.ResyncSeconds <= 0 || res.Restart.RxBytes <= 0 {
		t.Errorf("%s: restart %+v", c.Name, res.Restart)
	}
	if res.NACKs != 0 {
		t.Errorf("%s: %d NACKs", c.Name, res.NACKs)
	}
}
