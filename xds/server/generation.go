package server

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluice-mesh/sluice/mesh"
)

// generation is the translated state of one snapshot: one view per proxy
// class, computed on first use and then read-only.
type generation struct {
	seq           uint64
	snap          *mesh.Snapshot
	endpointsOnly bool
	at            time.Time

	mu    sync.Mutex
	views map[classKey]*classView
	// eds holds the EDS of each endpoint class (see endpointClassOf),
	// shared by every class view of the generation that maps to it.
	eds map[classKey]*edsView
	// shared holds the type views of the generation by type and version.
	shared map[string]*typeView
	// twins holds, per class without IP and address inputs, the class view
	// that translates for all of them (see addressTwin).
	twins map[twinKey]*classView
	// prev is the generation an endpoints-only generation reuses listeners,
	// routes and clusters from; cleared once the known classes are built so
	// generations do not chain.
	prev *generation
}

// edsView is the EDS of one endpoint class, computed once.
type edsView struct {
	once sync.Once
	// done is closed once tv and warns are set.
	done  chan struct{}
	tv    *typeView
	warns []string
}

// classView is what every proxy of one class receives.
type classView struct {
	key   classKey
	proxy mesh.Proxy

	once sync.Once
	done atomic.Bool
	// ready is closed once computed.
	ready    chan struct{}
	types    map[string]*typeView
	warnings []string
}

// typeView holds the resources of one type of a class view.
type typeView struct {
	typeURL string
	// entries are sorted by name.
	entries []*entry
	byName  map[string]*entry
	// anys are the entries' payloads, a SotW wildcard response as is.
	anys []*anypb.Any
	// version is hashEntries(entries): equal versions, equal content.
	version string

	// id identifies the view (views are never compared by pointer once
	// gone, so ids keep nothing alive).
	id uint64
	// baseID, when not 0, is the view of the previous snapshot this one
	// replaces (the same endpoint class's EDS), and changed and removed
	// what differs: entries added or updated, names gone. Delta streams
	// whose client holds the base exactly get the diff (see knownID).
	baseID  uint64
	changed []*entry
	removed []string
}

// typeViewIDs numbers type views.
var typeViewIDs atomic.Uint64

// diffFrom records the difference from base to v.
func (v *typeView) diffFrom(base *typeView) {
	v.baseID = base.id
	for _, e := range v.entries {
		if b := base.byName[e.name]; b == nil || b.version != e.version {
			v.changed = append(v.changed, e)
		}
	}
	for _, e := range base.entries {
		if _, ok := v.byName[e.name]; !ok {
			v.removed = append(v.removed, e.name)
		}
	}
}

func newTypeView(typeURL string, entries []*entry) *typeView {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	tv := &typeView{
		id:      typeViewIDs.Add(1),
		typeURL: typeURL,
		entries: entries,
		byName:  make(map[string]*entry, len(entries)),
		anys:    make([]*anypb.Any, len(entries)),
	}
	for i, e := range entries {
		tv.byName[e.name] = e
		tv.anys[i] = e.any
	}
	tv.version = hashEntries(entries)
	return tv
}

func (v *classView) typeView(typeURL string) *typeView {
	if tv, ok := v.types[typeURL]; ok {
		return tv
	}
	return emptyTypeView(typeURL)
}

var emptyViews sync.Map // typeURL → *typeView

func emptyTypeView(typeURL string) *typeView {
	if tv, ok := emptyViews.Load(typeURL); ok {
		return tv.(*typeView)
	}
	tv, _ := emptyViews.LoadOrStore(typeURL, newTypeView(typeURL, nil))
	return tv.(*typeView)
}

// classView returns the (possibly not yet computed) view of class k.
func (g *generation) classView(k classKey, p mesh.Proxy) *classView {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.views[k]
	if !ok {
		v = &classView{key: k, proxy: p, ready: make(chan struct{})}
		g.views[k] = v
	}
	return v
}

// computedViews returns the views computed so far.
func (g *generation) computedViews() []*classView {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*classView, 0, len(g.views))
	for _, v := range g.views {
		if v.done.Load() {
			out = append(out, v)
		}
	}
	return out
}

// view returns the computed view of class k, translating it if needed.
func (c *xdsCache) view(g *generation, k classKey, p mesh.Proxy) *classView {
	v := g.classView(k, p)
	v.once.Do(func() {
		c.computeView(g, v)
		v.done.Store(true)
		close(v.ready)
	})
	return v
}

func (c *xdsCache) computeView(g *generation, v *classView) {
	if g.snap == nil {
		v.types = map[string]*typeView{}
		return
	}
	var prev *classView
	g.mu.Lock()
	if g.prev != nil {
		g.prev.mu.Lock()
		if pv, ok := g.prev.views[v.key]; ok && pv.done.Load() {
			prev = pv
		}
		g.prev.mu.Unlock()
	}
	g.mu.Unlock()

	if prev != nil {
		// Endpoint fast path: keep everything but EDS.
		c.translating <- struct{}{}
		defer func() { <-c.translating }()
		c.metrics.translations.WithLabelValues("endpoints").Inc()
		v.types = make(map[string]*typeView, len(prev.types))
		for typ, tv := range prev.types {
			v.types[typ] = tv
		}
		eds, warns := c.endpointsView(g, v.key, nil)
		v.types[resourcev3.EndpointType] = eds
		v.warnings = append(prev.warnings[:len(prev.warnings):len(prev.warnings)], warns...)
		return
	}

	// Before taking a translation slot: the twin may be waiting for one.
	if t := c.addressTwin(g, v); t != nil {
		// Same translation as a class of another IP with equal inputs.
		v.types, v.warnings = t.types, t.warnings
		return
	}
	c.translating <- struct{}{}
	defer func() { <-c.translating }()
	c.metrics.translations.WithLabelValues("full").Inc()
	r := c.translator.Translate(g.snap, &v.proxy)
	v.types = make(map[string]*typeView, len(r.Resources))
	v.warnings = append([]string(nil), r.Warnings...)
	sn := seen{}
	for typ, list := range r.Resources {
		if typ == resourcev3.EndpointType {
			// Shared with the other classes of the endpoint class; this
			// translation's EDS is used if it is the first.
			tv, warns := c.endpointsView(g, v.key, func() ([]*entry, []string) { return c.entries(typ, list, sn) })
			v.types[typ] = tv
			v.warnings = append(v.warnings, warns...)
			continue
		}
		es, warns := c.entries(typ, list, sn)
		v.types[typ] = g.shareView(newTypeView(typ, es))
		v.warnings = append(v.warnings, warns...)
	}
}

// addressTwin returns the computed view of a class that differs from v's
// only in IP and has equal AddressInputs, registering v as the one to
// compute when there is none yet (nil then). Nil too without IP or
// AddressInputs.
func (c *xdsCache) addressTwin(g *generation, v *classView) *classView {
	if v.key.ip == "" || c.inputs == nil {
		return nil
	}
	base := v.key
	base.ip = ""
	key := twinKey{class: base, inputs: c.inputs(g.snap, &v.proxy)}
	g.mu.Lock()
	if g.twins == nil {
		g.twins = map[twinKey]*classView{}
	}
	t, ok := g.twins[key]
	if !ok {
		g.twins[key] = v
	}
	g.mu.Unlock()
	if !ok || t == v {
		return nil
	}
	// Computed by its own view's once; wait for it.
	<-t.ready
	return t
}

// twinKey groups the classes of a generation that get the same
// translation: a class without its IP, and what of the IP translation
// reads (AddressInputs).
type twinKey struct {
	class  classKey
	inputs string
}

// shareView returns the generation's view equal to tv (same type, names
// and versions) if there is one, else tv: classes whose resources of a
// type are the same (clusters of every namespace, say) share one view,
// stored and counted once.
func (g *generation) shareView(tv *typeView) *typeView {
	key := tv.typeURL + "\x00" + tv.version
	g.mu.Lock()
	defer g.mu.Unlock()
	if got, ok := g.shared[key]; ok {
		return got
	}
	if g.shared == nil {
		g.shared = map[string]*typeView{}
	}
	g.shared[key] = tv
	return tv
}

// distinctTypeViews returns the type views of views, each once (views
// share them); only those of typeURL unless it is "".
func distinctTypeViews(views []*classView, typeURL string) []*typeView {
	seen := map[*typeView]bool{}
	var out []*typeView
	for _, v := range views {
		for typ, tv := range v.types {
			if (typeURL == "" || typ == typeURL) && !seen[tv] {
				seen[tv] = true
				out = append(out, tv)
			}
		}
	}
	return out
}

// endpointClassOf is the part of a class EDS may depend on: the proxy kind
// and zone (locality priorities). Translator.Endpoints promises not to
// depend on the rest, so every class of an endpoint class shares one EDS,
// translated and marshaled once per snapshot, however many per-IP Envoy
// classes or namespaces there are.
func endpointClassOf(k classKey) (classKey, mesh.Proxy) {
	ek := classKey{kind: k.kind, zone: k.zone}
	return ek, mesh.Proxy{ID: "endpoints " + ek.String(), Kind: ek.kind, Zone: ek.zone}
}

// endpointsView returns the EDS of class k's endpoint class in g,
// computing it with translated (the EDS of a full translation of a class of
// it) or, when translated is nil, with Translator.Endpoints.
func (c *xdsCache) endpointsView(g *generation, k classKey, translated func() ([]*entry, []string)) (*typeView, []string) {
	ek, ep := endpointClassOf(k)
	g.mu.Lock()
	if g.eds == nil {
		g.eds = map[classKey]*edsView{}
	}
	ev, ok := g.eds[ek]
	if !ok {
		ev = &edsView{done: make(chan struct{})}
		g.eds[ek] = ev
	}
	g.mu.Unlock()
	ev.once.Do(func() {
		var es []*entry
		if translated != nil {
			es, ev.warns = translated()
		} else {
			es, ev.warns = c.entries(resourcev3.EndpointType, c.translator.Endpoints(g.snap, &ep), nil)
		}
		ev.tv = newTypeView(resourcev3.EndpointType, es)
		if base := g.prevEndpoints(ek); base != nil {
			ev.tv.diffFrom(base)
		}
		close(ev.done)
	})
	return ev.tv, ev.warns
}

// prevEndpoints returns the EDS of endpoint class ek in the generation g
// replaces, if it was computed and g is an endpoints-only update of it.
func (g *generation) prevEndpoints(ek classKey) *typeView {
	g.mu.Lock()
	prev := g.prev
	g.mu.Unlock()
	if prev == nil {
		return nil
	}
	prev.mu.Lock()
	ev := prev.eds[ek]
	prev.mu.Unlock()
	if ev == nil {
		return nil
	}
	// Whoever added it computes it.
	<-ev.done
	return ev.tv
}

// entries interns the resources of one type, dropping (with a warning) what
// cannot be marshaled and duplicate names. sn remembers the messages of the
// translation they come from.
func (c *xdsCache) entries(typeURL string, list []types.Resource, sn seen) ([]*entry, []string) {
	var warns []string
	out := make([]*entry, 0, len(list))
	names := make(map[string]bool, len(list))
	for _, res := range list {
		if res == nil {
			continue
		}
		name := cachev3.GetResourceName(res)
		if names[name] {
			warns = append(warns, fmt.Sprintf("%s %q: duplicate name: only the first is served", shortType(typeURL), name))
			continue
		}
		names[name] = true
		e, err := c.intern.intern(typeURL, name, res, sn)
		if err != nil {
			warns = append(warns, err.Error()+": not served")
			continue
		}
		out = append(out, e)
	}
	return out, warns
}

// typeRank orders types as ADS wants them added: clusters, endpoints,
// listeners, routes, then the rest.
func typeRank(typeURL string) int {
	return int(cachev3.GetResponseType(typeURL))
}

// shortType is the metric label and the short name of a type URL.
func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoint"
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route"
	case resourcev3.SecretType:
		return "secret"
	case resourcev3.VirtualHostType:
		return "virtual_host"
	case resourcev3.RuntimeType:
		return "runtime"
	case resourcev3.ExtensionConfigType:
		return "extension_config"
	case resourcev3.ScopedRouteType:
		return "scoped_route"
	default:
		return "other"
	}
}

// referencedBy lists, for a type, the types whose resources name its
// resources. A resource is removed from a proxy only after the proxy has
// ACKed those types at a generation without the reference (routes before the
// clusters they use, clusters before their endpoints).
var referencedBy = map[string][]string{
	resourcev3.ClusterType:  {resourcev3.ListenerType, resourcev3.RouteType},
	resourcev3.EndpointType: {resourcev3.ClusterType},
	resourcev3.RouteType:    {resourcev3.ListenerType},
	resourcev3.SecretType:   {resourcev3.ClusterType, resourcev3.ListenerType},
}
