package discovery

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	m.observeProblems(nil, []Problem{{Reason: ReasonNoPorts}})
	m.observeObjects(map[string]int{KindService: 3})
	m.coalescedEvents.Inc()
	m.buildDuration.Observe(0.001)

	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
		assert.True(t, strings.HasPrefix(f.GetName(), "sluice_discovery_"), f.GetName())
	}
	assert.ElementsMatch(t, []string{
		"sluice_discovery_problems_total", "sluice_discovery_problems", "sluice_discovery_snapshots_total",
		"sluice_discovery_builds_total", "sluice_discovery_coalesced_events_total",
		"sluice_discovery_build_duration_seconds", "sluice_discovery_objects",
	}, names)

	_, err = NewMetrics(reg)
	assert.Error(t, err, "registering twice fails")
}
