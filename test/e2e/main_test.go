//go:build e2e

// Package e2e holds Sluice's end-to-end tests: real binaries against a real
// kube-apiserver, etcd and kube-controller-manager (test/cluster), all inside
// a private network namespace. Run with `make e2e` or
// `go test -tags e2e ./test/e2e/`.
package e2e

import (
	"os"
	"testing"

	"github.com/sluice-mesh/sluice/test/cluster"
)

// TestMain re-executes the test binary in a private network namespace where
// the pod network exists; the suite fails (never skips) if it cannot.
func TestMain(m *testing.M) {
	os.Exit(cluster.RunInNetNS(m.Run))
}
