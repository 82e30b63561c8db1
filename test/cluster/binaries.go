package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BinDirEnv names a directory holding etcd, kube-apiserver and
// kube-controller-manager; when set, the test cluster uses it as is and
// builds nothing.
const BinDirEnv = "SLUICE_TEST_BIN_DIR"

// buildScript is the script, relative to the repository root, that builds the
// pinned binaries into a cache outside the repository.
const buildScript = "test/cluster/tools/build.sh"

// BinDir returns the directory with the cluster's binaries: $SLUICE_TEST_BIN_DIR
// when set, else the cache directory printed by test/cluster/tools/build.sh,
// which builds them first if the cache lacks them (about 15 minutes cold;
// its progress goes to stderr).
func BinDir(ctx context.Context) (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir, checkBinaries(dir)
	}
	script, err := findBuildScript()
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script, "--print-dir")
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build test cluster binaries with %s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	dir := lines[len(lines)-1]
	return dir, checkBinaries(dir)
}

func checkBinaries(dir string) error {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("test cluster binary %s missing in %s (run %s, or set %s): %w", b, dir, buildScript, BinDirEnv, err)
		}
	}
	return nil
}

// findBuildScript looks for the build script in the working directory and
// its parents: go test runs in the package directory, go run wherever it was
// started inside the repository.
func findBuildScript() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", buildScript, err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, buildScript)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find %s: %w", buildScript, err)
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("cannot find %s in %s or its parents: run the tests from the Sluice repository, or build the binaries and set %s", buildScript, wd, BinDirEnv)
		}
	}
}
