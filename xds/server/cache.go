package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

// xdsCache implements go-control-plane's cache.Cache (and its server
// callbacks) over per-class translated views of the latest snapshot.
//
// Watches are one-shot: a watch is answered at most once, and the client's
// next request (its ACK or NACK) opens the next one. Each stream has at most
// one open watch per type, so a response never waits for room in
// go-control-plane's buffered channels.
type xdsCache struct {
	translator Translator
	// inputs is the translator's AddressInputs, nil if it has none.
	inputs  func(*mesh.Snapshot, *mesh.Proxy) string
	log     *slog.Logger
	metrics *metrics
	intern  *internTable
	now     func() time.Time
	// translating bounds concurrent translations to GOMAXPROCS: when many
	// proxies of new classes connect at once, each stream would otherwise
	// translate at the same time, and memory peaks at one full
	// translation per connecting class (gigabytes at 1,000 services).
	translating chan struct{}

	// snapMu serializes snapshots.
	snapMu sync.Mutex

	mu      sync.Mutex
	gen     *generation
	streams map[streamKey]*streamState
	// reqs finds the stream of a request between the request callback and
	// CreateWatch, which go-control-plane calls in that order on the
	// stream's goroutine.
	reqs map[any]*streamState
	// classes counts the connected proxies of each class.
	classes   map[classKey]int
	snapTimes map[uint64]time.Time
	nextWatch uint64
	// changed is closed and replaced when a stream's sync state changes.
	changed      chan struct{}
	syncChanged  bool
	fullSnapshot bool
}

var _ cachev3.Cache = (*xdsCache)(nil)

func newCache(tr Translator, m *metrics, log *slog.Logger) *xdsCache {
	return &xdsCache{
		translator:  tr,
		inputs:      addressInputs(tr),
		log:         log,
		metrics:     m,
		intern:      newInternTable(func(typeURL string) { m.marshals.WithLabelValues(shortType(typeURL)).Inc() }),
		now:         time.Now,
		translating: make(chan struct{}, runtime.GOMAXPROCS(0)),
		gen:         &generation{views: map[classKey]*classView{}},
		streams:     map[streamKey]*streamState{},
		reqs:        map[any]*streamState{},
		classes:     map[classKey]int{},
		snapTimes:   map[uint64]time.Time{},
		changed:     make(chan struct{}),
	}
}

// setSnapshot installs a snapshot and answers every open watch it changes.
func (c *xdsCache) setSnapshot(snap *mesh.Snapshot, endpointsOnly bool) uint64 {
	c.snapMu.Lock()
	defer c.snapMu.Unlock()

	c.mu.Lock()
	prev := c.gen
	live := make(map[classKey]mesh.Proxy, len(c.classes))
	for _, st := range c.streams {
		if st.proxy != nil {
			live[st.class] = st.classProxy
		}
	}
	c.mu.Unlock()

	g := &generation{seq: prev.seq + 1, snap: snap, endpointsOnly: endpointsOnly, at: c.now(), views: map[classKey]*classView{}}
	if endpointsOnly && prev.snap != nil {
		g.prev = prev
	}
	// Translate every connected class before taking the lock, so streams
	// are not held up by translation.
	for k, p := range live {
		c.view(g, k, p)
	}
	g.mu.Lock()
	g.prev = nil
	g.mu.Unlock()
	views := g.computedViews()
	if !endpointsOnly || c.intern.grown() {
		c.intern.prune(distinctTypeViews(views, ""))
	}
	c.metrics.observeViews(views, endpointsOnly)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen = g
	if !endpointsOnly || prev.snap == nil {
		c.fullSnapshot = true
	}
	c.snapTimes[g.seq] = g.at
	delete(c.snapTimes, g.seq-maxSnapTimes)
	for _, st := range c.streams {
		c.pushStream(st)
	}
	c.notify()
	return g.seq
}

// maxSnapTimes bounds how far back change-to-ACK latency is measured.
const maxSnapTimes = 4096

// CreateWatch implements cache.ConfigWatcher for SotW.
func (c *xdsCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	return c.createWatch(req, req.GetTypeUrl(), sub, func(w *watch) { w.sotwReq, w.sotwCh = req, ch })
}

// CreateDeltaWatch implements cache.ConfigWatcher for delta.
func (c *xdsCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	return c.createWatch(req, req.GetTypeUrl(), sub, func(w *watch) { w.deltaReq, w.deltaCh = req, ch })
}

func (c *xdsCache) createWatch(req any, typeURL string, sub cachev3.Subscription, set func(*watch)) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.reqs[req]
	if !ok {
		return nil, fmt.Errorf("%s request from an unknown stream", shortType(typeURL))
	}
	delete(c.reqs, req)
	st.lastReq = nil

	ts := st.typeState(typeURL)
	c.nextWatch++
	w := &watch{id: c.nextWatch, typeURL: typeURL, sub: sub, first: ts.sentCount == 0}
	set(w)
	ts.watch = w
	if subscriptionMayHaveChanged(ts, req) {
		// Most requests are ACKs of an unchanged subscription: skip
		// sorting thousands of names for /debug on each of them.
		ts.wildcard = sub.IsWildcard()
		ts.names = sortedNames(sub.SubscribedResources())
		ts.knownID = 0
	}

	c.pushStream(st)
	c.notify()
	id := w.id
	return func() { c.cancelWatch(st, typeURL, id) }, nil
}

func (c *xdsCache) cancelWatch(st *streamState, typeURL string, id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := st.types[typeURL]; ts != nil && ts.watch != nil && ts.watch.id == id {
		ts.watch = nil
	}
}

// pushStream evaluates the open watches of a stream in ADS order (clusters,
// endpoints, listeners, routes). When a removal is waiting for another type
// of the same stream, a second pass lets it go once that type caught up.
func (c *xdsCache) pushStream(st *streamState) {
	if c.gen.snap == nil {
		return // nothing to say before the first snapshot
	}
	var open [8]*typeState
	for pass := 0; pass < 2; pass++ {
		list := open[:0]
		for _, ts := range st.types {
			if ts.watch != nil {
				list = append(list, ts)
			}
		}
		slices.SortFunc(list, compareTypes)
		pending := false
		for _, ts := range list {
			if c.evaluate(st, ts) {
				pending = true
			}
		}
		if !pending {
			return
		}
	}
}

// subscriptionMayHaveChanged reports whether req may change the
// subscription of ts: a first request, a delta request that subscribes,
// unsubscribes or states initial versions, or a SotW request whose names
// differ from the previous request's.
func subscriptionMayHaveChanged(ts *typeState, req any) bool {
	first := !ts.subscribed
	ts.subscribed = true
	switch r := req.(type) {
	case *cachev3.DeltaRequest:
		return first || len(r.GetResourceNamesSubscribe()) > 0 || len(r.GetResourceNamesUnsubscribe()) > 0 ||
			len(r.GetInitialResourceVersions()) > 0
	case *cachev3.Request:
		names := r.GetResourceNames()
		changed := first || !slices.Equal(names, ts.lastNames)
		ts.lastNames = names
		return changed
	}
	return true
}

// notify wakes WaitAllAcked when a stream's sync state changed.
func (c *xdsCache) notify() {
	if !c.syncChanged {
		return
	}
	c.syncChanged = false
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *xdsCache) markSynced(ts *typeState, seq uint64) {
	if ts.clean() && seq > ts.syncedSeq {
		ts.syncedSeq = seq
		c.syncChanged = true
	}
}

// Fetch implements cache.ConfigFetcher (the unary Fetch* RPCs): the
// resources named in the request (all when none) for the requesting node.
func (c *xdsCache) Fetch(_ context.Context, req *cachev3.Request) (cachev3.Response, error) {
	c.mu.Lock()
	g := c.gen
	c.mu.Unlock()
	if g.snap == nil {
		return nil, errors.New("no configuration yet")
	}
	k, cp := classOf(ParseProxy(req.GetNode()))
	tv := c.view(g, k, cp).typeView(req.GetTypeUrl())
	list := tv.entries
	names := req.GetResourceNames()
	if len(names) > 0 && !contains(names, "*") {
		list = nil
		sorted := append([]string(nil), names...)
		sort.Strings(sorted)
		for i, n := range sorted {
			if e := tv.byName[n]; e != nil && (i == 0 || sorted[i-1] != n) {
				list = append(list, e)
			}
		}
	}
	version := hashEntries(list)
	if req.GetVersionInfo() == version {
		return nil, &types.SkipFetchError{}
	}
	return newSotwResponse(c, nil, req, version, list, nil, nil), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// compareTypes orders type states in ADS order.
func compareTypes(a, b *typeState) int {
	if c := cmp.Compare(typeRank(a.typeURL), typeRank(b.typeURL)); c != 0 {
		return c
	}
	return cmp.Compare(a.typeURL, b.typeURL)
}
