package server

import (
	"maps"
	"sort"
	"strconv"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// evaluate answers the open watch of ts if the client lacks something it
// subscribes to; otherwise it records that the client is in sync. It reports
// whether a removal is still waiting for another type. Called with c.mu held.
func (c *xdsCache) evaluate(st *streamState, ts *typeState) (pending bool) {
	g := c.gen
	w := ts.watch
	tv := c.view(g, st.class, st.classProxy).typeView(w.typeURL)
	if w.matched != "" && w.matched == tv.version && len(ts.removedAt) == 0 {
		c.markSynced(ts, g.seq)
		return false
	}
	if w.deltaReq != nil {
		return c.evaluateDelta(st, ts, w, tv)
	}
	return c.evaluateSotw(st, ts, w, tv)
}

// deferRemoval reports whether the removal of name (of type ts) from the
// client must wait: some type referring to it has not been ACKed at a
// snapshot without it yet.
func (c *xdsCache) deferRemoval(st *streamState, ts *typeState, name string) bool {
	at, ok := ts.removedAt[name]
	if !ok {
		at = c.gen.seq
		ts.removedAt[name] = at
	}
	for _, dep := range referencedBy[ts.typeURL] {
		if dts := st.types[dep]; dts != nil && dts.syncedSeq < at {
			return true
		}
	}
	return false
}

// changeSeq is the first snapshot a response to w may deliver: the one after
// the client's last synced snapshot. Zero for a first or a re-subscription
// response, which is not counted as change-to-ACK latency.
func (c *xdsCache) changeSeq(ts *typeState, w *watch) uint64 {
	if w.first || ts.syncedSeq == 0 || c.gen.seq <= ts.syncedSeq {
		return 0
	}
	return ts.syncedSeq + 1
}

func (c *xdsCache) evaluateSotw(st *streamState, ts *typeState, w *watch, tv *typeView) bool {
	wildcard := w.sub.IsWildcard()
	subscribed := w.sub.SubscribedResources()
	desired := tv.entries
	if !wildcard {
		desired = make([]*entry, 0, len(subscribed))
		for n := range subscribed {
			if e := tv.byName[n]; e != nil {
				desired = append(desired, e)
			}
		}
		sort.Slice(desired, func(i, j int) bool { return desired[i].name < desired[j].name })
	}

	// Keep what the client has and lost, in the subscription, while the
	// types that refer to it still might.
	var retained []*entry
	for _, e := range ts.sent.list {
		if _, ok := tv.byName[e.name]; ok {
			delete(ts.removedAt, e.name)
			continue
		}
		if _, ok := subscribed[e.name]; !wildcard && !ok {
			continue
		}
		if c.deferRemoval(st, ts, e.name) {
			retained = append(retained, e)
		}
	}
	list, version := desired, tv.version
	if len(retained) > 0 {
		list = append(append(make([]*entry, 0, len(desired)+len(retained)), desired...), retained...)
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	}
	if !wildcard || len(retained) > 0 {
		version = hashEntries(list)
	}

	fullState := cachev3.ResourceRequiresFullStateInSotw(w.typeURL)
	respond := w.first || ts.lastSent == nil || version != ts.lastSent.version ||
		(fullState && subscriptionChanged(ts.lastSent, wildcard, subscribed))
	if !respond {
		if len(retained) == 0 {
			w.matched = tv.version
			c.markSynced(ts, c.gen.seq)
		}
		return len(retained) > 0
	}

	meta := &responseMeta{
		typeURL:   w.typeURL,
		seq:       c.gen.seq,
		changeSeq: c.changeSeq(ts, w),
		complete:  len(retained) == 0,
		version:   version,
		entries:   list,
	}
	if fullState {
		meta.wildcard = wildcard
		meta.names = make(map[string]struct{}, len(subscribed))
		for n := range subscribed {
			meta.names[n] = struct{}{}
		}
	}
	var anys []*anypb.Any
	if wildcard && len(retained) == 0 {
		anys = tv.anys
	}
	ts.watch = nil
	resp := newSotwResponse(c, st, w.sotwReq, version, list, anys, meta)
	select {
	case w.sotwCh <- resp:
	default:
		// Cannot happen with one open watch per type; say so loudly if it does.
		c.log.Error("xDS response dropped: stream channel full", "proxy", st.proxy.ID, "type", shortType(w.typeURL))
	}
	return len(retained) > 0
}

func subscriptionChanged(last *responseMeta, wildcard bool, subscribed map[string]struct{}) bool {
	if last.wildcard != wildcard || len(last.names) != len(subscribed) {
		return true
	}
	for n := range subscribed {
		if _, ok := last.names[n]; !ok {
			return true
		}
	}
	return false
}

func (c *xdsCache) evaluateDelta(st *streamState, ts *typeState, w *watch, tv *typeView) bool {
	wildcard := w.sub.IsWildcard()
	subscribed := w.sub.SubscribedResources()
	known := w.sub.ReturnedResources()
	firstWildcard := w.first && wildcard && w.deltaReq.GetResponseNonce() == ""
	if ts.knownID != 0 && len(ts.removedAt) == 0 && !firstWildcard {
		if tv.id == ts.knownID {
			w.matched = tv.version
			c.markSynced(ts, c.gen.seq)
			return false
		}
		if tv.baseID == ts.knownID && c.evaluateDeltaDiff(st, ts, w, tv, wildcard, subscribed, known) {
			return false
		}
	}
	ts.knownID = 0

	next := make(map[string]string, max(len(known), len(subscribed)))
	var updated []*entry
	consider := func(e *entry) {
		next[e.name] = e.version
		if v, ok := known[e.name]; !ok || v != e.version {
			updated = append(updated, e)
		}
	}
	if wildcard {
		for _, e := range tv.entries {
			consider(e)
		}
	} else {
		for n := range subscribed {
			if e := tv.byName[n]; e != nil {
				consider(e)
			}
		}
		sort.Slice(updated, func(i, j int) bool { return updated[i].name < updated[j].name })
	}

	var removed []string
	retained := false
	for name, v := range known {
		if _, ok := next[name]; ok {
			delete(ts.removedAt, name)
			continue
		}
		if _, ok := subscribed[name]; !wildcard && !ok {
			continue // no longer subscribed: forgotten, not removed
		}
		if v != "" && c.deferRemoval(st, ts, name) {
			next[name] = v
			retained = true
			continue
		}
		removed = append(removed, name)
	}
	sort.Strings(removed)

	respond := len(updated) > 0 || len(removed) > 0 || firstWildcard
	if !retained {
		ts.knownID = tv.id
	}
	if !respond {
		if !retained {
			w.matched = tv.version
			c.markSynced(ts, c.gen.seq)
		}
		return retained
	}

	meta := &responseMeta{
		typeURL:   w.typeURL,
		delta:     true,
		seq:       c.gen.seq,
		changeSeq: c.changeSeq(ts, w),
		complete:  !retained,
		version:   strconv.FormatUint(c.gen.seq, 10),
		entries:   updated,
		removed:   removed,
	}
	ts.watch = nil
	resp := newDeltaResponse(c, st, w.deltaReq, next, meta)
	select {
	case w.deltaCh <- resp:
	default:
		c.log.Error("xDS delta response dropped: stream channel full", "proxy", st.proxy.ID, "type", shortType(w.typeURL))
	}
	return retained
}

// evaluateDeltaDiff answers w with the difference between the view the
// client holds (tv's base, ts.knownID) and tv, going over what changed
// rather than every subscribed name: the endpoint fast path of delta
// streams. It reports false, having sent nothing, when a removal must wait
// for another type; evaluateDelta then does the full comparison.
func (c *xdsCache) evaluateDeltaDiff(st *streamState, ts *typeState, w *watch, tv *typeView,
	wildcard bool, subscribed map[string]struct{}, known map[string]string) bool {
	var updated []*entry
	for _, e := range tv.changed {
		if _, ok := subscribed[e.name]; wildcard || ok {
			updated = append(updated, e)
		}
	}
	var removed []string
	for _, name := range tv.removed {
		v, ok := known[name]
		if !ok {
			continue
		}
		if v != "" && c.deferRemoval(st, ts, name) {
			return false
		}
		removed = append(removed, name)
	}
	ts.knownID = tv.id
	if len(updated) == 0 && len(removed) == 0 {
		w.matched = tv.version
		c.markSynced(ts, c.gen.seq)
		return true
	}
	next := maps.Clone(known)
	for _, e := range updated {
		next[e.name] = e.version
	}
	for _, name := range removed {
		delete(next, name)
	}
	meta := &responseMeta{
		typeURL:   w.typeURL,
		delta:     true,
		seq:       c.gen.seq,
		changeSeq: c.changeSeq(ts, w),
		complete:  true,
		version:   strconv.FormatUint(c.gen.seq, 10),
		entries:   updated,
		removed:   removed,
	}
	ts.watch = nil
	resp := newDeltaResponse(c, st, w.deltaReq, next, meta)
	select {
	case w.deltaCh <- resp:
	default:
		c.log.Error("xDS delta response dropped: stream channel full", "proxy", st.proxy.ID, "type", shortType(w.typeURL))
	}
	return true
}
