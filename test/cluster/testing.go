package cluster

import (
	"context"
	"testing"
)

// StartForTest starts a cluster for a test and stops it in t.Cleanup; on
// test failure the cleanup logs the tail of every component's log first.
// Processes die with the test binary even if cleanup never runs (timeout,
// panic). The test fails at once if the cluster cannot start.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := Start(context.WithoutCancel(t.Context()), opts)
	if err != nil {
		t.Fatalf("start test cluster: %v", err)
	}
	t.Logf("test cluster up in %v: kubeconfig %s", c.StartupDuration.Round(10e6), c.Kubeconfig)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test cluster logs:\n%s", c.LogTails(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop test cluster: %v", err)
		}
	})
	return c
}
