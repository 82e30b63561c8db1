package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Change kinds.
const (
	KindEndpointFlip = "endpoint flip"
	KindNewService   = "new service"
	KindPodRestart   = "pod restart (burst)"
	KindRouteWeight  = "route weight change"
)

// CaseResult is what one case measured.
type CaseResult struct {
	Name           string      `json:"name"`
	Services       int         `json:"services"`
	Endpoints      int         `json:"endpointsPerService"`
	Proxies        int         `json:"proxies"`
	Client         string      `json:"client"`
	Protocol       string      `json:"protocol"`
	StreamsPerConn int         `json:"streamsPerConn"`
	NodeFormat     string      `json:"nodeFormat"`
	Pinning        string      `json:"pinning"`
	Baseline       Memory      `json:"baseline"`
	Steady         Memory      `json:"steady"`
	Connect        *PhaseStats `json:"connect,omitempty"`
	// Changes by kind.
	Changes      map[string]*ChangeStats `json:"changes"`
	Burst        *BurstStats             `json:"burst,omitempty"`
	Restart      *RestartStats           `json:"restart,omitempty"`
	NACKs        int64                   `json:"nacks"`
	StreamErrors int                     `json:"streamErrors"`
	Error        string                  `json:"error,omitempty"`
}

// Memory is the control plane's memory at one moment.
type Memory struct {
	RSSBytes       int64 `json:"rssBytes"`
	HeapInuseBytes int64 `json:"heapInuseBytes"`
}

// PhaseStats describe connecting the proxies.
type PhaseStats struct {
	// Seconds from the first stream opened to the last proxy holding
	// full config.
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	RxBytes    int64   `json:"rxBytes"`
}

// ChangeStats are the figures of the changes of one kind.
type ChangeStats struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
	// Proxies is how many proxies subscribe to a change (the largest).
	Proxies int `json:"proxies"`
	// Latencies from the write to the last subscribed proxy's ACK, ms.
	P50ms float64 `json:"p50ms"`
	P99ms float64 `json:"p99ms"`
	Maxms float64 `json:"maxms"`
	// CPUSecondsPerChange is the control plane's CPU over the phase
	// divided by the changes.
	CPUSecondsPerChange float64 `json:"cpuSecondsPerChange"`
	RxBytesPerChange    float64 `json:"rxBytesPerChange"`
}

// BurstStats describe a burst of pod restarts as a whole.
type BurstStats struct {
	Restarts      int     `json:"restarts"`
	WindowSeconds float64 `json:"windowSeconds"`
	// WritesSeconds is when the last write returned, from the first.
	WritesSeconds float64 `json:"writesSeconds"`
	// ConvergeAfterS is from the last write returning to every proxy
	// holding every restart; TotalSeconds from the first write.
	ConvergeAfterS float64 `json:"convergeAfterSeconds"`
	TotalSeconds   float64 `json:"totalSeconds"`
}

// RestartStats describe a control-plane restart.
type RestartStats struct {
	StopSeconds float64 `json:"stopSeconds"`
	// ReadySeconds is from the new process's start to /readyz;
	// ResyncSeconds to every proxy holding full config again.
	ReadySeconds  float64 `json:"readySeconds"`
	ResyncSeconds float64 `json:"resyncSeconds"`
	CPUSeconds    float64 `json:"cpuSeconds"`
	RxBytes       int64   `json:"rxBytes"`
}

func (s *ChangeStats) setLatencies(lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.P50ms = ms(percentile(sorted, 0.50))
	s.P99ms = ms(percentile(sorted, 0.99))
	s.Maxms = ms(sorted[len(sorted)-1])
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Report is a run of the harness: the machine and the cases.
type Report struct {
	Started time.Time     `json:"started"`
	Machine Machine       `json:"machine"`
	Source  string        `json:"source"`
	Pinning string        `json:"pinning"`
	Args    []string      `json:"args"`
	Cases   []*CaseResult `json:"cases"`
}

// Machine identifies where figures come from.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	// LoadAvg is /proc/loadavg at the start (other work on the machine).
	LoadAvg string `json:"loadavg"`
}

// ThisMachine describes the machine.
func ThisMachine(cpus int) Machine {
	m := Machine{CPUs: cpus}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	return m
}

// WriteJSON writes the report to dir/<time>.json and returns the path.
func (r *Report) WriteJSON(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	path := filepath.Join(dir, r.Started.UTC().Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	return path, nil
}

// WriteMarkdown prints the report as markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Machine: %d CPUs, %s; load average at start %s. Source: %s. Pinning: %s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.LoadAvg, r.Source, r.Pinning)
	fmt.Fprintln(w, "| case | client | xDS | services×eps | proxies | change | n | proxies/change | p50 ms | p99 ms | max ms | CPU ms/change | CPU µs/proxy | KB rx/change |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range r.Cases {
		prefix := fmt.Sprintf("| %s | %s | %s | %d×%d | %d ", c.Name, c.Client, c.Protocol, c.Services, c.Endpoints, c.Proxies)
		if c.Error != "" {
			fmt.Fprintf(w, "%s| **failed**: %s | | | | | | | | |\n", prefix, strings.ReplaceAll(c.Error, "|", "/"))
		}
		for _, kind := range []string{KindEndpointFlip, KindNewService, KindRouteWeight, KindPodRestart} {
			s := c.Changes[kind]
			if s == nil || s.Count == 0 {
				continue
			}
			perProxy := 0.0
			if s.Proxies > 0 {
				perProxy = s.CPUSecondsPerChange / float64(s.Proxies) * 1e6
			}
			fmt.Fprintf(w, "%s| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", prefix, kind, s.Count, s.Proxies,
				s.P50ms, s.P99ms, s.Maxms, s.CPUSecondsPerChange*1e3, perProxy, s.RxBytesPerChange/1024)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | proxies | connect s | connect CPU s | MB rx (connect) | RSS MB (0 → P proxies) | heap MB (0 → P) | KB/proxy RSS | KB/proxy heap | burst: converge after last write ms | restart: ready s / all resynced s | NACKs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range r.Cases {
		mb := func(b int64) float64 { return float64(b) / (1 << 20) }
		perProxy := func(a, b int64) float64 {
			if c.Proxies == 0 {
				return 0
			}
			return float64(b-a) / float64(c.Proxies) / 1024
		}
		connect, connectCPU, connectRx := "-", "-", "-"
		if c.Connect != nil {
			connect = fmt.Sprintf("%.2f", c.Connect.Seconds)
			connectCPU = fmt.Sprintf("%.2f", c.Connect.CPUSeconds)
			connectRx = fmt.Sprintf("%.1f", mb(c.Connect.RxBytes))
		}
		burst, restart := "-", "-"
		if c.Burst != nil {
			burst = fmt.Sprintf("%.0f (writes took %.0f)", c.Burst.ConvergeAfterS*1e3, c.Burst.WritesSeconds*1e3)
		}
		if c.Restart != nil {
			restart = fmt.Sprintf("%.2f / %.2f", c.Restart.ReadySeconds, c.Restart.ResyncSeconds)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %.0f → %.0f | %.0f → %.0f | %.1f | %.1f | %s | %s | %d |\n",
			c.Name, c.Proxies, connect, connectCPU, connectRx,
			mb(c.Baseline.RSSBytes), mb(c.Steady.RSSBytes), mb(c.Baseline.HeapInuseBytes), mb(c.Steady.HeapInuseBytes),
			perProxy(c.Baseline.RSSBytes, c.Steady.RSSBytes), perProxy(c.Baseline.HeapInuseBytes, c.Steady.HeapInuseBytes),
			burst, restart, c.NACKs)
	}
}
