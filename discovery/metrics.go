package discovery

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are discovery's Prometheus metrics:
//
//	sluice_discovery_problems_total{reason}       counter  problems found (counted when they appear)
//	sluice_discovery_problems{reason}             gauge    problems present now
//	sluice_discovery_snapshots_total{update}      counter  snapshots published; update="full" or "endpoints"
//	sluice_discovery_builds_total{result}         counter  builds; result="published" or "unchanged"
//	sluice_discovery_coalesced_events_total       counter  change notifications folded into builds
//	sluice_discovery_build_duration_seconds       histogram time to build one snapshot
//	sluice_discovery_objects{kind}                gauge    objects in the store by kind
type Metrics struct {
	problemsTotal   *prometheus.CounterVec
	problems        *prometheus.GaugeVec
	snapshots       *prometheus.CounterVec
	builds          *prometheus.CounterVec
	coalescedEvents prometheus.Counter
	buildDuration   prometheus.Histogram
	objects         *prometheus.GaugeVec
}

// NewMetrics creates discovery's metrics and registers them with reg; a nil
// reg leaves them unregistered (tests, or when metrics are not wanted).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		problemsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_discovery_problems_total",
			Help: "Problems found in input objects and files, counted when they appear, by reason.",
		}, []string{"reason"}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_discovery_problems",
			Help: "Problems currently present in input objects and files, by reason.",
		}, []string{"reason"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_discovery_snapshots_total",
			Help: `Mesh snapshots published, by update kind: "full" or "endpoints" (endpoints only).`,
		}, []string{"update"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_discovery_builds_total",
			Help: `Snapshot builds, by result: "published" or "unchanged" (no-op, not published).`,
		}, []string{"result"}),
		coalescedEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_discovery_coalesced_events_total",
			Help: "Change notifications folded into snapshot builds.",
		}),
		buildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_discovery_build_duration_seconds",
			Help:    "Time to build one mesh snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_discovery_objects",
			Help: "Kubernetes objects held by discovery, by kind.",
		}, []string{"kind"}),
	}
	for _, label := range []string{"full", "endpoints"} {
		m.snapshots.WithLabelValues(label)
	}
	for _, label := range []string{"published", "unchanged"} {
		m.builds.WithLabelValues(label)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.problemsTotal, m.problems, m.snapshots, m.builds, m.coalescedEvents, m.buildDuration, m.objects} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering discovery metrics: %w", err)
		}
	}
	return m, nil
}

// observeProblems updates the problem metrics from the previous and the
// current problem sets.
func (m *Metrics) observeProblems(prev, cur []Problem) {
	seen := make(map[problemKey]bool, len(prev))
	for _, p := range prev {
		seen[p.key()] = true
	}
	byReason := map[string]float64{}
	for _, p := range prev {
		byReason[p.Reason] = 0
	}
	for _, p := range cur {
		byReason[p.Reason]++
		if !seen[p.key()] {
			m.problemsTotal.WithLabelValues(p.Reason).Inc()
		}
	}
	for reason, n := range byReason {
		m.problems.WithLabelValues(reason).Set(n)
	}
}

func (m *Metrics) observeObjects(counts map[string]int) {
	for kind, n := range counts {
		m.objects.WithLabelValues(kind).Set(float64(n))
	}
}
