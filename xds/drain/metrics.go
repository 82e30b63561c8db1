package drain

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a drain wait, the "outcome" label of the metrics.
const (
	outcomeDrained  = "drained"
	outcomeTimeout  = "timeout"
	outcomeCanceled = "canceled"
	outcomeStopped  = "stopped"
)

type metrics struct {
	waits      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	inProgress prometheus.Gauge
}

// newMetrics creates the drain metrics, registered on reg unless it is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_drain_waits_total",
			Help: "Drain waits (GET /drain) by outcome: drained, timeout, canceled (the caller went away) or stopped (control plane shutdown).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_drain_wait_seconds",
			Help:    "How long drain waits took, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 15), // 5ms to ~82s
		}, []string{"outcome"}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_drain_waits_in_progress",
			Help: "Drain waits currently blocked.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.waits, m.duration, m.inProgress)
	}
	return m
}
