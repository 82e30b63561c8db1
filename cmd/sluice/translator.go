package main

import (
	"log/slog"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/server"
	"github.com/sluice-mesh/sluice/xds/translate"
	"github.com/sluice-mesh/sluice/xds/validate"
)

// newTranslator returns the translation the xDS server runs per proxy group.
// With check set (--validate-resources), every result also goes through the
// deep validator; a failure is logged, counted and shown as a warning, and
// the resources are still served (Envoy or gRPC has the final word: a NACK).
func newTranslator(opts translate.Options, check bool, reg prometheus.Registerer, log *slog.Logger) server.Translator {
	tr := server.TranslatorFuncs{
		TranslateFunc: func(s *mesh.Snapshot, p *mesh.Proxy) translate.Result { return translate.Translate(s, p, opts) },
		EndpointsFunc: func(s *mesh.Snapshot, p *mesh.Proxy) []types.Resource { return translate.Endpoints(s, p, opts) },
		// Envoy proxies whose pods serve the same ports share one translation.
		InputsFunc: func(s *mesh.Snapshot, p *mesh.Proxy) string { return translate.EndpointInputs(s, p, opts) },
	}
	if !check {
		return tr
	}
	invalid := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_xds_invalid_translations_total",
		Help: "Translations the deep validator rejected (only counted with --validate-resources), by proxy kind.",
	}, []string{"kind"})
	reg.MustRegister(invalid)
	translateFn := tr.TranslateFunc
	tr.TranslateFunc = func(s *mesh.Snapshot, p *mesh.Proxy) translate.Result {
		res := translateFn(s, p)
		check := validate.Resources
		if p.Kind != mesh.ProxyEnvoy {
			check = validate.GRPCResources
		}
		if err := check(res.Resources); err != nil {
			invalid.WithLabelValues(string(p.Kind)).Inc()
			log.Error("translation failed deep validation", "proxy", p.ID, "error", err)
			res.Warnings = append(res.Warnings, "deep validation: "+err.Error())
		}
		return res
	}
	return tr
}
