package rotation

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/certs/ca"
)

type metrics struct {
	phase       *prometheus.GaugeVec
	phaseSince  prometheus.Gauge
	transitions *prometheus.CounterVec
	completed   *prometheus.CounterVec
	timeouts    prometheus.Counter
	errors      prometheus.Counter
}

var (
	laggingDesc = prometheus.NewDesc("sluice_ca_rotation_lagging_agents",
		"Agents, on every replica reporting, that have not applied the trust bundle version in use (still on an old bundle).", nil, nil)
	nextRotationDesc = prometheus.NewDesc("sluice_ca_rotation_due_timestamp_seconds",
		"When the root or the intermediate reaches the rotation threshold of its life, as a Unix time.", []string{"kind"}, nil)
)

func newMetrics(reg prometheus.Registerer, m *Machine) (*metrics, error) {
	mt := &metrics{
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_ca_rotation_phase",
			Help: "The phase of the CA rotation: 1 for the current phase, 0 for the others.",
		}, []string{"phase"}),
		phaseSince: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ca_rotation_phase_since_timestamp_seconds",
			Help: "When the current rotation phase was entered, as a Unix time (0 if never recorded).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ca_rotation_transitions_total",
			Help: "Rotation phases entered by this replica as leader, by phase.",
		}, []string{"phase"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ca_rotations_completed_total",
			Help: "Rotations this replica completed as leader, by kind (root, intermediate).",
		}, []string{"kind"}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_rotation_bundle_timeouts_total",
			Help: "Bundle waits ended by the timeout although agents had not applied the bundle.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ca_rotation_errors_total",
			Help: "Failed passes of the rotation (store unreachable, invalid state...).",
		}),
	}
	for _, p := range ca.Phases {
		mt.phase.WithLabelValues(string(p))
		mt.transitions.WithLabelValues(string(p))
	}
	for _, k := range []ca.RotationKind{ca.RotateRoot, ca.RotateIntermediate} {
		mt.completed.WithLabelValues(string(k))
	}
	if reg == nil {
		return mt, nil
	}
	for _, c := range []prometheus.Collector{mt.phase, mt.phaseSince, mt.transitions, mt.completed, mt.timeouts, mt.errors, collector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("CA rotation metrics: %w", err)
		}
	}
	return mt, nil
}

func (mt *metrics) setPhase(st *ca.State) {
	for _, p := range ca.Phases {
		v := 0.0
		if p == st.Phase() {
			v = 1
		}
		mt.phase.WithLabelValues(string(p)).Set(v)
	}
	since := 0.0
	if !st.Rotation.Since.IsZero() {
		since = float64(st.Rotation.Since.Unix())
	}
	mt.phaseSince.Set(since)
}

// collector reports what is computed from the machine's state.
type collector struct{ m *Machine }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- laggingDesc
	ch <- nextRotationDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	v := c.m.view.Load()
	lagging, st := v.lagging, v.state
	ch <- prometheus.MustNewConstMetric(laggingDesc, prometheus.GaugeValue, float64(lagging))
	if root := signingRoot(st.Material); root != nil {
		ch <- prometheus.MustNewConstMetric(nextRotationDesc, prometheus.GaugeValue, float64(c.m.dueAt(root).Unix()), string(ca.RotateRoot))
	}
	ch <- prometheus.MustNewConstMetric(nextRotationDesc, prometheus.GaugeValue, float64(c.m.dueAt(st.Material.Signer()).Unix()), string(ca.RotateIntermediate))
}
