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
	// endpoints alone.
	Endpoints(snap *mesh.Snapshot, p *mesh.Proxy) []types.Resource
}

// TranslatorFuncs adapts two functions to the Translator interface, e.g.
//
//	server.TranslatorFuncs{
//		TranslateFunc: func(s *mesh.Snapshot, p *mesh.Proxy) translate.Result { return translate.Translate(s, p, opts) },
//		EndpointsFunc: func(s *mesh.Snapshot, p *mesh.Proxy) []types.Resource { return translate.Endpoints(s, p, opts) },
//	}
type TranslatorFuncs struct {
	TranslateFunc func(snap *mesh.Snapshot, p *mesh.Proxy) translate.Result
	EndpointsFunc func(snap *mesh.Snapshot, p *mesh.Proxy) []types.Resource
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
