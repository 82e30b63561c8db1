package server

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the server's Prometheus series.
type metrics struct {
	connected    *prometheus.GaugeVec
	classes      prometheus.Gauge
	pushes       *prometheus.CounterVec
	nacks        *prometheus.CounterVec
	changeToAck  *prometheus.HistogramVec
	resources    *prometheus.GaugeVec
	warnings     prometheus.Gauge
	translations *prometheus.CounterVec
	marshals     *prometheus.CounterVec
}

// newMetrics registers the series on reg (none when reg is nil).
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		connected: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_xds_connected_proxies",
			Help: "xDS streams with an identified proxy, by proxy kind.",
		}, []string{"kind"}),
		classes: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_xds_proxy_classes",
			Help: "Distinct proxy classes connected (proxies of a class share one translation).",
		}),
		pushes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_pushes_total",
			Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		nacks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_nacks_total",
			Help: "xDS responses rejected by proxies, by resource type.",
		}, []string{"type"}),
		changeToAck: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_xds_change_to_ack_seconds",
			Help:    "Time from a snapshot to a proxy ACKing a response that includes its change, by resource type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1ms .. 33s
		}, []string{"type"}),
		resources: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_xds_resources",
			Help: "Distinct resources of the current snapshot across proxy classes, by resource type.",
		}, []string{"type"}),
		warnings: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_xds_translation_warnings",
			Help: "Distinct translation warnings of the current snapshot.",
		}),
		translations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_translations_total",
			Help: "Translations of a proxy class: full, or endpoints only (the fast path).",
		}, []string{"mode"}),
		marshals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_marshals_total",
			Help: "Resources marshaled, by resource type (each is then shared by every proxy that receives it).",
		}, []string{"type"}),
	}
}

// observeViews sets the resource and warning gauges from a generation's
// views; after an endpoints-only snapshot only EDS can have changed.
func (m *metrics) observeViews(views []*classView, endpointsOnly bool) {
	only := ""
	if endpointsOnly {
		only = resourcev3.EndpointType
	}
	byType := map[string]map[*entry]struct{}{}
	for _, tv := range distinctTypeViews(views, only) {
		set := byType[tv.typeURL]
		if set == nil {
			set = map[*entry]struct{}{}
			byType[tv.typeURL] = set
		}
		for _, e := range tv.entries {
			set[e] = struct{}{}
		}
	}
	if endpointsOnly {
		m.resources.WithLabelValues(shortType(resourcev3.EndpointType)).Set(float64(len(byType[resourcev3.EndpointType])))
		return
	}
	warns := map[string]struct{}{}
	for _, v := range views {
		for _, w := range v.warnings {
			warns[w] = struct{}{}
		}
	}
	m.resources.Reset()
	for typ, set := range byType {
		m.resources.WithLabelValues(shortType(typ)).Set(float64(len(set)))
	}
	m.warnings.Set(float64(len(warns)))
}
