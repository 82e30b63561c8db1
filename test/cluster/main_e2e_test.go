//go:build e2e

package cluster

import (
	"os"
	"testing"
)

// With the e2e tag this package's tests run against a real cluster, inside
// the test network namespace.
func TestMain(m *testing.M) {
	os.Exit(RunInNetNS(m.Run))
}
