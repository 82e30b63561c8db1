package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ControlPlane starts the xDS server under test.
type ControlPlane interface {
	// Start starts it reading the given source flags, serving xDS on
	// xdsAddress, and returns once it is ready (its first full snapshot is
	// installed).
	Start(ctx context.Context, source []string, xdsAddress string) (*Instance, error)
}

// Instance is a running control plane.
type Instance struct {
	XDSAddress string
	// DebugURL serves /metrics ("" when there is none).
	DebugURL string
	// PID is the process measured for CPU and RSS.
	PID int
	// Started is when the process was started (before it was ready).
	Started time.Time
	stop    func() error
}

// Stop stops the control plane and waits for it to exit.
func (i *Instance) Stop() error { return i.stop() }

// Process runs `sluice serve` as a subprocess.
type Process struct {
	// Binary is the sluice binary.
	Binary string
	// PinCPU, when >= 0, runs it on that CPU alone (taskset) with
	// GOMAXPROCS=1.
	PinCPU int
	// Args are extra flags for `sluice serve` (e.g. --hold-off).
	Args []string
	// LogDir receives one log file per start.
	LogDir string

	starts int
}

// Start implements ControlPlane.
func (p *Process) Start(ctx context.Context, source []string, xdsAddress string) (*Instance, error) {
	debugAddr, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--xds-address", xdsAddress, "--debug-address", debugAddr, "--log-level", "warn"}, source...)
	args = append(args, p.Args...)
	name := p.Binary
	if p.PinCPU >= 0 {
		args = append([]string{"-c", strconv.Itoa(p.PinCPU), p.Binary}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	if p.PinCPU >= 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.starts++
	var logFile *os.File
	if p.LogDir != "" {
		if err := os.MkdirAll(p.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("control plane log: %w", err)
		}
		logFile, err = os.Create(filepath.Join(p.LogDir, fmt.Sprintf("sluice-%d.log", p.starts)))
		if err != nil {
			return nil, fmt.Errorf("control plane log: %w", err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", p.Binary, err)
	}
	// exited is closed when the process is gone, waitErr set before.
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(exited)
	}()
	inst := &Instance{
		XDSAddress: xdsAddress,
		DebugURL:   "http://" + debugAddr,
		PID:        cmd.Process.Pid,
		Started:    started,
	}
	inst.stop = func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		return nil
	}
	if err := waitReady(ctx, inst.DebugURL, exited, func() error { return waitErr }); err != nil {
		_ = inst.stop()
		if logFile != nil {
			if tail := logTail(logFile.Name(), 5); tail != "" {
				err = fmt.Errorf("%w; its log ends:\n%s", err, tail)
			}
		}
		return nil, err
	}
	return inst, nil
}

// logTail returns the last n lines of a file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// waitReady polls /readyz until it answers 200, failing if exited is closed
// first (exitErr says how it ended).
func waitReady(ctx context.Context, debugURL string, exited <-chan struct{}, exitErr func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, debugURL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("control plane exited before it was ready: %v", exitErr())
		case <-ctx.Done():
			return fmt.Errorf("control plane not ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FreeAddress returns a loopback address with a free port.
func FreeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// cpuSeconds is the user + system CPU time of pid.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("cpu time: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("cpu time: short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return (utime + stime) / clockTicks, nil
}

// rssBytes is the resident set size of pid.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("rss: no VmRSS")
}

// scrapeMetric returns the value of an unlabeled series from /metrics.
func scrapeMetric(ctx context.Context, debugURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, debugURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("metrics: no %s", name)
}
