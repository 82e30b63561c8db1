//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/test/cluster"
)

var (
	buildOnce sync.Once
	sluiceBin string
	buildErr  error
)

// sluiceBinary builds bin/sluice once per test binary, into a temp dir.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		sluiceBin = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-o", sluiceBin, "github.com/sluice-mesh/sluice/cmd/sluice")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build sluice: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return sluiceBin
}

// controlPlane is a running `sluice serve` process.
type controlPlane struct {
	XDSAddress string
	CAAddress  string
	DebugURL   string
	cmd        *exec.Cmd
	log        *bytes.Buffer
	logMu      *sync.Mutex
	exited     chan error
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startSluice runs `sluice serve --kubeconfig` against the test cluster and
// stops it (SIGTERM, asserting a clean exit) when the test ends.
func startSluice(t *testing.T, c *cluster.Cluster, extraArgs ...string) *controlPlane {
	t.Helper()
	bin := sluiceBinary(t)
	// The CA keeps its Secret in Sluice's own namespace, as in deploy/.
	if err := c.CreateNamespace(t.Context(), "sluice-system"); err != nil {
		t.Fatalf("create sluice-system: %v", err)
	}
	cp := &controlPlane{
		XDSAddress: "127.0.0.1:" + freePort(t),
		log:        &bytes.Buffer{},
		logMu:      &sync.Mutex{},
		exited:     make(chan error, 1),
	}
	debugAddr := "127.0.0.1:" + freePort(t)
	cp.DebugURL = "http://" + debugAddr
	cp.CAAddress = "127.0.0.1:" + freePort(t)
	args := append([]string{"serve", "--kubeconfig", c.Kubeconfig,
		"--xds-address", cp.XDSAddress, "--debug-address", debugAddr, "--ca-address", cp.CAAddress,
		"--hold-off", "10ms", "--max-delay", "100ms", "--log-level", "debug", "--validate-resources"}, extraArgs...)
	cp.cmd = exec.Command(bin, args...)
	cp.cmd.Stdout = lockedWriter{cp.logMu, cp.log}
	cp.cmd.Stderr = lockedWriter{cp.logMu, cp.log}
	cp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cp.cmd.Start(); err != nil {
		t.Fatalf("start sluice: %v", err)
	}
	go func() { cp.exited <- cp.cmd.Wait() }()
	t.Cleanup(func() {
		// Every response this control plane built passed the deep validator.
		if n, err := cp.metricSum("sluice_xds_invalid_translations_total"); err != nil || n != 0 {
			t.Errorf("deep validation failures: %v (err %v)", n, err)
		}
		_ = cp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-cp.exited:
			if err != nil {
				t.Errorf("sluice serve did not exit cleanly on SIGTERM: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cp.cmd.Process.Kill()
			t.Errorf("sluice serve still running 15s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("sluice serve log (tail):\n%s", cp.logTail(60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for httpStatus(cp.DebugURL+"/readyz") != http.StatusOK {
		select {
		case err := <-cp.exited:
			t.Fatalf("sluice serve exited before ready: %v\n%s", err, cp.logTail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice serve not ready after 60s\n%s", cp.logTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cp
}

func (cp *controlPlane) logTail(n int) string {
	cp.logMu.Lock()
	defer cp.logMu.Unlock()
	lines := strings.Split(strings.TrimRight(cp.log.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ackedEndpoints returns the endpoint addresses of cluster in the EDS
// response the proxy last ACKed, and whether its last EDS response is ACKed.
func (cp *controlPlane) ackedEndpoints(proxyID, cluster string) (addrs []string, acked bool, err error) {
	var dump struct {
		Types []struct {
			TypeURL      string            `json:"typeUrl"`
			Version      string            `json:"version"`
			AckedVersion string            `json:"ackedVersion"`
			Resources    []json.RawMessage `json:"resources"`
		} `json:"types"`
	}
	if err := httpJSON(cp.DebugURL+"/debug/config_dump?proxy="+proxyID, &dump); err != nil {
		return nil, false, err
	}
	for _, ty := range dump.Types {
		if !strings.HasSuffix(ty.TypeURL, "ClusterLoadAssignment") {
			continue
		}
		for _, raw := range ty.Resources {
			var cla struct {
				ClusterName string `json:"clusterName"`
				Endpoints   []struct {
					LbEndpoints []struct {
						Endpoint struct {
							Address struct {
								SocketAddress struct {
									Address string `json:"address"`
								} `json:"socketAddress"`
							} `json:"address"`
						} `json:"endpoint"`
					} `json:"lbEndpoints"`
				} `json:"endpoints"`
			}
			if err := json.Unmarshal(raw, &cla); err != nil {
				return nil, false, err
			}
			if cla.ClusterName != cluster {
				continue
			}
			for _, loc := range cla.Endpoints {
				for _, ep := range loc.LbEndpoints {
					addrs = append(addrs, ep.Endpoint.Address.SocketAddress.Address)
				}
			}
		}
		return addrs, ty.Version != "" && ty.Version == ty.AckedVersion, nil
	}
	return nil, false, fmt.Errorf("proxy %s has no EDS state", proxyID)
}

// metricSum adds up every series of a counter or gauge on /metrics; a
// metric with no series yet counts 0.
func (cp *controlPlane) metricSum(name string) (float64, error) {
	resp, err := http.Get(cp.DebugURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
