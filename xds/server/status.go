package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
)

// ProxyStatus is one connected stream as /debug/proxies shows it.
type ProxyStatus struct {
	ID             string       `json:"id"`
	Stream         string       `json:"stream"`
	Kind           string       `json:"kind"`
	Namespace      string       `json:"namespace,omitempty"`
	Pod            string       `json:"pod,omitempty"`
	ServiceAccount string       `json:"serviceAccount,omitempty"`
	IP             string       `json:"ip,omitempty"`
	Zone           string       `json:"zone,omitempty"`
	Class          string       `json:"class"`
	ConnectedSince time.Time    `json:"connectedSince"`
	Types          []TypeStatus `json:"types"`
}

// TypeStatus is the protocol state of one resource type of one stream.
type TypeStatus struct {
	TypeURL      string      `json:"typeUrl"`
	Wildcard     bool        `json:"wildcard,omitempty"`
	Names        []string    `json:"names,omitempty"`
	SentVersion  string      `json:"sentVersion,omitempty"`
	SentNonce    string      `json:"sentNonce,omitempty"`
	SentAt       *time.Time  `json:"sentAt,omitempty"`
	AckedVersion string      `json:"ackedVersion,omitempty"`
	AckedNonce   string      `json:"ackedNonce,omitempty"`
	AckedAt      *time.Time  `json:"ackedAt,omitempty"`
	Resources    int         `json:"ackedResources"`
	SyncedSeq    uint64      `json:"syncedSnapshot"`
	LastNack     *nackRecord `json:"lastNack,omitempty"`
}

// Proxies returns every identified stream, sorted by proxy id.
func (s *Server) Proxies() []ProxyStatus {
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ProxyStatus, 0, len(c.streams))
	for _, st := range c.streams {
		if st.proxy == nil {
			continue
		}
		ps := ProxyStatus{
			ID:             st.proxy.ID,
			Stream:         st.key.String(),
			Kind:           string(st.proxy.Kind),
			Namespace:      st.proxy.Namespace,
			Pod:            st.proxy.Pod,
			ServiceAccount: st.proxy.ServiceAccount,
			IP:             st.proxy.IP,
			Zone:           st.proxy.Zone,
			Class:          st.class.String(),
			ConnectedSince: st.connectedAt,
		}
		for _, ts := range sortedTypes(st) {
			t := TypeStatus{
				TypeURL:   ts.typeURL,
				Wildcard:  ts.wildcard,
				Names:     ts.names,
				Resources: ts.acked.len(),
				SyncedSeq: ts.syncedSeq,
				LastNack:  ts.lastNack,
			}
			if m := ts.lastSent; m != nil {
				t.SentVersion, t.SentNonce, t.SentAt = m.version, m.nonce, &m.sentAt
			}
			if m := ts.ackedMeta; m != nil {
				at := ts.ackedAt
				t.AckedVersion, t.AckedNonce, t.AckedAt = m.version, m.nonce, &at
			}
			ps.Types = append(ps.Types, t)
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].ID < out[j].ID || (out[i].ID == out[j].ID && out[i].Stream < out[j].Stream)
	})
	return out
}

func (k streamKey) String() string {
	if k.delta {
		return fmt.Sprintf("delta/%d", k.id)
	}
	return fmt.Sprintf("sotw/%d", k.id)
}

func sortedTypes(st *streamState) []*typeState {
	out := make([]*typeState, 0, len(st.types))
	for _, ts := range st.types {
		out = append(out, ts)
	}
	slices.SortFunc(out, compareTypes)
	return out
}

// ErrUnknownProxy is returned for a node id no connected stream has. It
// wraps fs.ErrNotExist, which the debug handler turns into a 404.
var ErrUnknownProxy = fmt.Errorf("no connected proxy with this id: %w", fs.ErrNotExist)

// streamOf returns the newest stream of a node id. Called with c.mu held.
func (c *xdsCache) streamOf(id string) *streamState {
	var best *streamState
	for _, st := range c.streams {
		if st.proxy != nil && st.proxy.ID == id && (best == nil || st.connectedAt.After(best.connectedAt)) {
			best = st
		}
	}
	return best
}

type configDump struct {
	ID     string           `json:"id"`
	Stream string           `json:"stream"`
	Types  []typeConfigDump `json:"types"`
}

type typeConfigDump struct {
	TypeURL      string            `json:"typeUrl"`
	Version      string            `json:"version"`
	Nonce        string            `json:"nonce"`
	AckedVersion string            `json:"ackedVersion,omitempty"`
	Resources    []json.RawMessage `json:"resources"`
}

// ConfigDump returns, as JSON, every resource last sent to the proxy (its
// newest stream), per type, each in protojson.
func (s *Server) ConfigDump(proxyID string) ([]byte, error) {
	c := s.cache
	c.mu.Lock()
	st := c.streamOf(proxyID)
	if st == nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%q: %w", proxyID, ErrUnknownProxy)
	}
	dump := configDump{ID: proxyID, Stream: st.key.String()}
	var sent [][]*entry
	for _, ts := range sortedTypes(st) {
		t := typeConfigDump{TypeURL: ts.typeURL}
		if m := ts.lastSent; m != nil {
			t.Version, t.Nonce = m.version, m.nonce
		}
		if m := ts.ackedMeta; m != nil {
			t.AckedVersion = m.version
		}
		dump.Types = append(dump.Types, t)
		sent = append(sent, ts.sent.all())
	}
	c.mu.Unlock()

	// Entries are immutable: render them without the lock.
	for i, es := range sent {
		dump.Types[i].Resources = make([]json.RawMessage, 0, len(es))
		for _, e := range es {
			b, err := protojson.Marshal(e.res)
			if err != nil {
				return nil, fmt.Errorf("rendering %s %q: %w", shortType(e.typeURL), e.name, err)
			}
			dump.Types[i].Resources = append(dump.Types[i].Resources, b)
		}
	}
	out, err := json.MarshalIndent(dump, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config dump of %q: %w", proxyID, err)
	}
	return out, nil
}

// AckedVersion returns the version the proxy last ACKed for a type (the
// SotW version_info, or for delta the snapshot number of the response).
func (s *Server) AckedVersion(proxyID, typeURL string) (string, bool) {
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streamOf(proxyID)
	if st == nil {
		return "", false
	}
	ts := st.types[typeURL]
	if ts == nil || ts.ackedMeta == nil {
		return "", false
	}
	return ts.ackedMeta.version, true
}

// AckedEverywhere reports whether every connected proxy that was sent the
// resource typeURL/name has ACKed a copy of it that accept approves, e.g.
// "every proxy using cluster X has ACKed endpoints without Y". Proxies that
// were never sent it, or had it removed, do not count.
func (s *Server) AckedEverywhere(typeURL, name string, accept func(types.Resource) bool) bool {
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.streams {
		ts := st.types[typeURL]
		if ts == nil || ts.sent.get(name) == nil {
			continue
		}
		a := ts.acked.get(name)
		if a == nil || a != ts.sent.get(name) || !accept(a.res) {
			return false
		}
	}
	return true
}

// WaitAllAcked returns once every connected proxy has ACKed, for every type
// it subscribes to, configuration built from snapshot seq or later (or was
// found already up to date at seq). A proxy that NACKs is not up to date; the
// error on ctx expiry names the proxies still behind and their last NACK.
func (s *Server) WaitAllAcked(ctx context.Context, seq uint64) error {
	c := s.cache
	// Re-check only what was behind on each wake-up, and everything again
	// when that is done (streams may have connected meanwhile).
	var behind []laggard
	for {
		c.mu.Lock()
		behind = c.stillBehind(behind, seq)
		if len(behind) == 0 {
			behind = c.stillBehind(nil, seq)
		}
		ch := c.changed
		c.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			msgs := c.describe(behind)
			c.mu.Unlock()
			if len(msgs) > 5 {
				msgs = append(msgs[:5], fmt.Sprintf("and %d more", len(msgs)-5))
			}
			return fmt.Errorf("waiting for proxies to ACK snapshot %d: %w; behind: %s", seq, ctx.Err(), strings.Join(msgs, "; "))
		}
	}
}

// laggard is a stream's type not synced to a snapshot yet.
type laggard struct {
	st *streamState
	ts *typeState
}

// stillBehind returns the laggards of prev still behind seq, or, when prev
// is nil, every laggard. Called with c.mu held.
func (c *xdsCache) stillBehind(prev []laggard, seq uint64) []laggard {
	if prev != nil {
		out := prev[:0]
		for _, l := range prev {
			if c.streams[l.st.key] == l.st && l.ts.syncedSeq < seq {
				out = append(out, l)
			}
		}
		return out
	}
	var out []laggard
	for _, st := range c.streams {
		if st.proxy == nil {
			continue
		}
		for _, ts := range st.types {
			if ts.syncedSeq < seq {
				out = append(out, laggard{st, ts})
			}
		}
	}
	return out
}

// describe renders laggards for an error. Called with c.mu held.
func (c *xdsCache) describe(ls []laggard) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		msg := fmt.Sprintf("%s (%s) %s at %d", l.st.proxy.ID, l.st.key, shortType(l.ts.typeURL), l.ts.syncedSeq)
		if len(l.ts.rejected) > 0 && l.ts.lastNack != nil {
			msg += fmt.Sprintf(", NACKed %s: %s", l.ts.lastNack.Version, l.ts.lastNack.Message)
		}
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}

// Warnings returns the distinct translation warnings of the current
// snapshot, sorted, each prefixed with the proxy class it came from.
func (s *Server) Warnings() []string {
	s.cache.mu.Lock()
	g := s.cache.gen
	s.cache.mu.Unlock()
	seen := map[string]struct{}{}
	for _, v := range g.computedViews() {
		for _, w := range v.warnings {
			seen[w] = struct{}{}
		}
	}
	return sortedNames(seen)
}
