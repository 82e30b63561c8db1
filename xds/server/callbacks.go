package server

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// The cache is also go-control-plane's server callbacks: they tell it which
// stream a request comes from, what was really sent (a response queued for a
// type may be dropped when a newer request of that type arrives), and what
// the client ACKed or NACKed.
var _ serverv3.Callbacks = (*xdsCache)(nil)

func (c *xdsCache) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.openStream(streamKey{id: id})
	return nil
}

func (c *xdsCache) OnStreamClosed(id int64, _ *corev3.Node) { c.closeStream(streamKey{id: id}) }

func (c *xdsCache) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.openStream(streamKey{delta: true, id: id})
	return nil
}

func (c *xdsCache) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.closeStream(streamKey{delta: true, id: id})
}

func (c *xdsCache) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	c.request(streamKey{id: id}, req, req.GetNode(), req.GetTypeUrl(), func(st *streamState, ts *typeState) {
		last := ts.lastSent
		if req.GetResponseNonce() == "" || last == nil || last.nonce != req.GetResponseNonce() || last.handled {
			return // first request, stale nonce (go-control-plane ignores it) or seen already
		}
		if req.GetErrorDetail() != nil {
			c.recordNack(st, ts, last, req.GetErrorDetail().GetMessage())
		} else {
			c.recordAck(ts, last)
		}
	})
	return nil
}

func (c *xdsCache) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.request(streamKey{delta: true, id: id}, req, req.GetNode(), req.GetTypeUrl(), func(st *streamState, ts *typeState) {
		nonce := req.GetResponseNonce()
		if nonce == "" {
			return
		}
		for i, m := range ts.outstanding {
			if m.nonce != nonce {
				continue
			}
			// Earlier responses without an answer are taken as applied: a
			// client answers responses in order.
			ts.outstanding = append(ts.outstanding[:0], ts.outstanding[i+1:]...)
			if req.GetErrorDetail() != nil {
				c.recordNack(st, ts, m, req.GetErrorDetail().GetMessage())
			} else {
				c.recordAck(ts, m)
			}
			return
		}
	})
	return nil
}

func (c *xdsCache) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.sent(streamKey{id: id}, resp, resp.GetNonce())
}

func (c *xdsCache) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.sent(streamKey{delta: true, id: id}, resp, resp.GetNonce())
}

func (c *xdsCache) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

func (c *xdsCache) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

func (c *xdsCache) openStream(k streamKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streams[k] = &streamState{
		key:         k,
		connectedAt: c.now(),
		types:       map[string]*typeState{},
		building:    map[any]*responseMeta{},
	}
}

func (c *xdsCache) closeStream(k streamKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.streams[k]
	if !ok {
		return
	}
	delete(c.streams, k)
	if st.lastReq != nil {
		delete(c.reqs, st.lastReq)
	}
	if st.proxy != nil {
		c.metrics.connected.WithLabelValues(string(st.proxy.Kind)).Dec()
		if c.classes[st.class]--; c.classes[st.class] <= 0 {
			delete(c.classes, st.class)
		}
		c.metrics.classes.Set(float64(len(c.classes)))
	}
	c.syncChanged = true
	c.notify()
}

// request records a request before go-control-plane opens its watch:
// identifies the proxy on its first request, remembers which stream the
// request is from and lets ack process an ACK or NACK.
func (c *xdsCache) request(k streamKey, req any, node *corev3.Node, typeURL string, ack func(*streamState, *typeState)) {
	c.mu.Lock()
	st, ok := c.streams[k]
	if !ok {
		c.mu.Unlock()
		return
	}
	var newClass bool
	if st.proxy == nil {
		p := ParseProxy(node)
		st.proxy = &p
		st.class, st.classProxy = classOf(p)
		newClass = c.classes[st.class] == 0
		c.classes[st.class]++
		c.metrics.classes.Set(float64(len(c.classes)))
		c.metrics.connected.WithLabelValues(string(p.Kind)).Inc()
		c.log.Debug("xDS proxy connected", "proxy", p.ID, "kind", p.Kind, "namespace", p.Namespace, "zone", p.Zone, "class", st.class.String())
	}
	if st.lastReq != nil {
		delete(c.reqs, st.lastReq)
	}
	c.reqs[req] = st
	st.lastReq = req
	ack(st, st.typeState(typeURL))
	c.notify()
	g, class, cp := c.gen, st.class, st.classProxy
	c.mu.Unlock()

	// Translate a new class now, outside the lock, rather than in
	// CreateWatch under it.
	if newClass && g.snap != nil {
		c.view(g, class, cp)
	}
}

func (c *xdsCache) recordAck(ts *typeState, m *responseMeta) {
	m.handled = true
	now := c.now()
	ts.ackedMeta, ts.ackedAt = m, now
	if m.delta {
		ts.acked.apply(m)
		for _, e := range m.entries {
			delete(ts.rejected, e.name)
		}
		for _, n := range m.removed {
			delete(ts.rejected, n)
		}
	} else {
		ts.acked = resourceSet{list: m.entries}
		ts.rejected = nil
		ts.outstanding = nil
	}
	if m.complete {
		c.markSynced(ts, m.seq)
	}
	if m.changeSeq > 0 {
		if at, ok := c.snapTimes[m.changeSeq]; ok {
			c.metrics.changeToAck.WithLabelValues(shortType(m.typeURL)).Observe(now.Sub(at).Seconds())
		}
	}
}

func (c *xdsCache) recordNack(st *streamState, ts *typeState, m *responseMeta, msg string) {
	m.handled = true
	ts.lastNack = &nackRecord{Version: m.version, Nonce: m.nonce, Message: msg, At: c.now()}
	if ts.rejected == nil {
		ts.rejected = map[string]struct{}{}
	}
	if m.delta {
		for _, e := range m.entries {
			ts.rejected[e.name] = struct{}{}
		}
	} else {
		ts.rejected[""] = struct{}{}
		ts.outstanding = nil
	}
	c.syncChanged = true
	c.metrics.nacks.WithLabelValues(shortType(m.typeURL)).Inc()
	c.log.Warn("xDS proxy rejected configuration; it keeps its last accepted one",
		"proxy", st.proxy.ID, "type", shortType(m.typeURL), "version", m.version, "nonce", m.nonce, "error", msg)
}

// building remembers what a response proto carries until it is sent.
func (c *xdsCache) building(st *streamState, out any, m *responseMeta) {
	c.mu.Lock()
	st.building[out] = m
	c.mu.Unlock()
}

// sent records a response go-control-plane is about to write on the stream.
func (c *xdsCache) sent(k streamKey, out any, nonce string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.streams[k]
	if !ok {
		return
	}
	m, ok := st.building[out]
	if !ok {
		return
	}
	delete(st.building, out)
	m.nonce, m.sentAt = nonce, c.now()
	ts := st.typeState(m.typeURL)
	ts.sentCount++
	ts.lastSent = m
	if m.delta {
		ts.sent.apply(m)
		ts.outstanding = append(ts.outstanding, m)
		for _, n := range m.removed {
			delete(ts.removedAt, n)
		}
	} else {
		ts.sent = resourceSet{list: m.entries}
		ts.outstanding = []*responseMeta{m}
		for n := range ts.removedAt {
			if ts.sent.get(n) == nil {
				delete(ts.removedAt, n)
			}
		}
	}
	c.metrics.pushes.WithLabelValues(shortType(m.typeURL)).Inc()
}
