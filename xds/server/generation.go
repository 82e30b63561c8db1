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
	// prev is the generation an endpoints-only generation reuses listeners,
	// routes and clusters from; cleared once the known classes are built so
	// generations do not chain.
	prev *generation
}

// classView is what every proxy of one class receives.
type classView struct {
	key   classKey
	proxy mesh.Proxy

	once     sync.Once
	done     atomic.Bool
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
}

func newTypeView(typeURL string, entries []*entry) *typeView {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	tv := &typeView{
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
		v = &classView{key: k, proxy: p}
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
		c.metrics.translations.WithLabelValues("endpoints").Inc()
		v.types = make(map[string]*typeView, len(prev.types))
		for typ, tv := range prev.types {
			v.types[typ] = tv
		}
		v.warnings = prev.warnings
		eds, warns := c.entries(resourcev3.EndpointType, c.translator.Endpoints(g.snap, &v.proxy))
		v.types[resourcev3.EndpointType] = newTypeView(resourcev3.EndpointType, eds)
		v.warnings = append(v.warnings[:len(v.warnings):len(v.warnings)], warns...)
		return
	}

	c.metrics.translations.WithLabelValues("full").Inc()
	r := c.translator.Translate(g.snap, &v.proxy)
	v.types = make(map[string]*typeView, len(r.Resources))
	v.warnings = append([]string(nil), r.Warnings...)
	for typ, list := range r.Resources {
		es, warns := c.entries(typ, list)
		v.types[typ] = newTypeView(typ, es)
		v.warnings = append(v.warnings, warns...)
	}
}

// entries interns the resources of one type, dropping (with a warning) what
// cannot be marshaled and duplicate names.
func (c *xdsCache) entries(typeURL string, list []types.Resource) ([]*entry, []string) {
	var warns []string
	out := make([]*entry, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, res := range list {
		if res == nil {
			continue
		}
		name := cachev3.GetResourceName(res)
		if seen[name] {
			warns = append(warns, fmt.Sprintf("%s %q: duplicate name: only the first is served", shortType(typeURL), name))
			continue
		}
		seen[name] = true
		e, err := c.intern.intern(typeURL, name, res)
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
