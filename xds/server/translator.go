package server

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
)

// Translator turns the mesh model into xDS resources for one proxy class.
// Both methods must be pure functions of their arguments: the server calls
// them once per proxy class and snapshot and shares the output between every
// proxy of the class.
type Translator interface {
	// Translate returns every resource of the proxy, keyed by type URL.
	Translate(snap *mesh.Snapshot, p *mesh.Proxy) translate.Result
	// Endpoints returns only the EDS resources Translate would return: the
	// fast path for a snapshot that differs from the previous one in
	// endpoints alone. It may depend on the proxy's Kind and Zone only:
	// the server computes it once per kind and zone and shares it with
	// every class (TestTranslationIgnoresOutOfClassAttributes checks the
	// real translator).
	Endpoints(snap *mesh.Snapshot, p *mesh.Proxy) []types.Resource
}

// AddressInputs is optionally implemented by a Translator to say what of a
// proxy's IP its translation depends on. Envoy classes are per IP (the
// inbound listener serves the ports of the services the IP backs), so
// every sidecar would be translated on its own; with AddressInputs, Envoy
// classes that differ only in IP and have equal inputs share one
// translation per snapshot: the sidecars of one workload, and usually of
// every workload serving the same ports.
type AddressInputs interface {
	// AddressInputs returns a string such that two proxies that differ
	// only in IP and get equal strings for snap get equal Translate
	// resources (warnings may differ). translate.EndpointInputs is one.
	AddressInputs(snap *mesh.Snapshot, p *mesh.Proxy) string
}

// TranslatorFuncs adapts functions to the Translator interface (and to
// AddressInputs when InputsFunc is set), e.g.
//
//	server.TranslatorFuncs{
//		TranslateFunc: func(s *mesh.Snapshot, p *mesh.Proxy) translate.Result { return translate.Translate(s, p, opts) },
//		EndpointsFunc: func(s *mesh.Snapshot, p *mesh.Proxy) []types.Resource { return translate.Endpoints(s, p, opts) },
//		InputsFunc:    func(s *mesh.Snapshot, p *mesh.Proxy) string { return translate.EndpointInputs(s, p, opts) },
//	}
type TranslatorFuncs struct {
	TranslateFunc func(snap *mesh.Snapshot, p *mesh.Proxy) translate.Result
	EndpointsFunc func(snap *mesh.Snapshot, p *mesh.Proxy) []types.Resource
	// InputsFunc, optional, implements AddressInputs.
	InputsFunc func(snap *mesh.Snapshot, p *mesh.Proxy) string
}

var _ Translator = TranslatorFuncs{}

// Translate calls TranslateFunc.
func (f TranslatorFuncs) Translate(snap *mesh.Snapshot, p *mesh.Proxy) translate.Result {
	return f.TranslateFunc(snap, p)
}

// Endpoints calls EndpointsFunc.
func (f TranslatorFuncs) Endpoints(snap *mesh.Snapshot, p *mesh.Proxy) []types.Resource {
	return f.EndpointsFunc(snap, p)
}

// addressInputs returns tr's AddressInputs, nil when it has none.
func addressInputs(tr Translator) func(*mesh.Snapshot, *mesh.Proxy) string {
	if f, ok := tr.(TranslatorFuncs); ok {
		return f.InputsFunc
	}
	if f, ok := tr.(*TranslatorFuncs); ok {
		return f.InputsFunc
	}
	if a, ok := tr.(AddressInputs); ok {
		return a.AddressInputs
	}
	return nil
}
