package server

import (
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// PendingAck is a stream that keeps a resource from being applied
// everywhere in an accepted form, and why.
type PendingAck struct {
	Proxy  string `json:"proxy"`
	Stream string `json:"stream"`
	Reason string `json:"reason"`
}

// PendingAcks lists the connected streams that hold, or are being sent, the
// resource typeURL/name in a form accept does not approve, or that were sent
// it and have not ACKed it yet. An empty list means every proxy that has the
// resource has applied an approved copy and will only ever move to another
// approved one, e.g. "no proxy using cluster X can pick endpoint Y any more".
//
// It is AckedEverywhere with reasons, and finer in three ways the drain
// tracker (xds/drain) needs: a stream whose ACKed copy is approved and whose
// newer, unACKed copy is approved too is not pending (endpoint churn during
// a rollout must not hold a drain up); a removal sent but not ACKed keeps a
// stream pending while its ACKed copy is not approved; and a response built
// but not yet handed to gRPC counts.
func (s *Server) PendingAcks(typeURL, name string, accept func(types.Resource) bool) []PendingAck {
	// Entries are shared by the streams that carry the same version:
	// judge each once.
	judged := map[*entry]bool{}
	ok := func(e *entry) bool {
		v, seen := judged[e]
		if !seen {
			v = accept(e.res)
			judged[e] = v
		}
		return v
	}
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []PendingAck
	for _, st := range c.streams {
		if reason := pendingReason(st, typeURL, name, ok); reason != "" {
			p := PendingAck{Stream: st.key.String(), Reason: reason}
			if st.proxy != nil {
				p.Proxy = st.proxy.ID
			}
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Proxy < out[j].Proxy || (out[i].Proxy == out[j].Proxy && out[i].Stream < out[j].Stream)
	})
	return out
}

// pendingReason says why st is pending for typeURL/name, "" when it is not.
// Called with c.mu held.
func pendingReason(st *streamState, typeURL, name string, ok func(*entry) bool) string {
	for _, m := range st.building {
		if m.typeURL != typeURL {
			continue
		}
		for _, e := range m.entries {
			if e.name == name && !ok(e) {
				return "a response still routing there is being sent"
			}
		}
	}
	ts := st.types[typeURL]
	if ts == nil {
		return ""
	}
	sent, acked := ts.sent.get(name), ts.acked.get(name)
	switch {
	case acked != nil && !ok(acked):
		_, nackedName := ts.rejected[name]
		_, nackedAll := ts.rejected[""]
		if (nackedName || nackedAll) && ts.lastNack != nil {
			return fmt.Sprintf("rejected the update (NACK %s: %s); still applies a copy routing there", ts.lastNack.Version, ts.lastNack.Message)
		}
		if sent != acked {
			return "has not ACKed the update yet; still applies a copy routing there"
		}
		return "applies a copy routing there"
	case acked == nil && sent != nil:
		return "has not ACKed its first copy yet"
	case sent != nil && sent != acked && !ok(sent):
		return "was sent a copy routing there"
	}
	return ""
}

// SyncChanged returns a channel closed the next time a stream's sync state
// changes (an ACK of a newer snapshot, a NACK, a stream closing), the wake-up
// WaitAllAcked uses. Not every ACK closes it: pollers should also re-check
// on a timer.
func (s *Server) SyncChanged() <-chan struct{} {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.changed
}
