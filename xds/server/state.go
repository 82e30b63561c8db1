package server

import (
	"sort"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

// streamKey names an xDS stream. go-control-plane numbers SotW and delta
// streams separately.
type streamKey struct {
	delta bool
	id    int64
}

// streamState is the server's view of one connected stream (one proxy).
type streamState struct {
	key         streamKey
	connectedAt time.Time
	// proxy is parsed from the node of the first request; nil before.
	proxy      *mesh.Proxy
	class      classKey
	classProxy mesh.Proxy

	types map[string]*typeState
	// lastReq is the request handed to the cache last, kept to find the
	// stream in CreateWatch (go-control-plane does not pass a stream id).
	lastReq any
	// building maps a response proto handed to go-control-plane to what it
	// carries, until the send callback records it.
	building map[any]*responseMeta
}

func (st *streamState) typeState(typeURL string) *typeState {
	ts, ok := st.types[typeURL]
	if !ok {
		ts = &typeState{typeURL: typeURL, removedAt: map[string]uint64{}}
		st.types[typeURL] = ts
	}
	return ts
}

// typeState is the protocol state of one type on one stream.
type typeState struct {
	typeURL string
	// watch is the open watch, nil while a response is on its way or
	// awaiting the client's next request.
	watch *watch
	// wildcard and names are the subscription of the latest request.
	wildcard bool
	names    []string
	// subscribed is set once a request was seen; lastNames are the
	// resource names of the latest SotW request (to notice changes).
	subscribed bool
	lastNames  []string
	// knownID, for delta, is the id of the type view whose resources
	// (within the subscription) the client holds exactly: the last
	// response was built from it and retained nothing, and the
	// subscription has not changed since (0: not known). A newer view
	// whose base it is then goes out as the base's diff, without going
	// over every subscribed name.
	knownID uint64

	sentCount int
	lastSent  *responseMeta
	// sent is what the client was sent (SotW: the last response; delta:
	// accumulated), acked what it has ACKed.
	sent  resourceSet
	acked resourceSet
	// outstanding are responses sent and neither ACKed nor NACKed.
	outstanding []*responseMeta
	ackedMeta   *responseMeta
	ackedAt     time.Time
	lastNack    *nackRecord
	// rejected holds the names of NACKed resources not since replaced and
	// ACKed ("" for a SotW NACK: the whole set).
	rejected map[string]struct{}
	// syncedSeq is the latest snapshot the client is known to have fully
	// applied and ACKed for this type.
	syncedSeq uint64
	// removedAt holds resources the client has that are gone from its view,
	// with the snapshot that removed them, while their removal waits for
	// the types referring to them (see referencedBy).
	removedAt map[string]uint64
}

func (ts *typeState) clean() bool { return len(ts.outstanding) == 0 && len(ts.rejected) == 0 }

// watch is one open request of a stream for a type.
type watch struct {
	id      uint64
	typeURL string
	sub     cachev3.Subscription
	// first is set when nothing was sent on the stream for the type yet.
	first bool
	// matched is the version of the type view the client was found to be in
	// sync with, to skip re-evaluation while the view is unchanged.
	matched string

	sotwReq  *cachev3.Request
	sotwCh   chan cachev3.Response
	deltaReq *cachev3.DeltaRequest
	deltaCh  chan cachev3.DeltaResponse
}

// responseMeta describes a response: what it carries and its fate.
type responseMeta struct {
	typeURL string
	delta   bool
	seq     uint64
	// changeSeq is the oldest snapshot whose change the response delivers,
	// 0 when it answers a new subscription rather than a change.
	changeSeq uint64
	// complete is false when the response still carries resources whose
	// removal waits for other types.
	complete bool
	// version is the SotW version_info or the delta system_version_info.
	version string
	// entries is the full set (SotW) or the added and updated resources (delta).
	entries []*entry
	removed []string
	// wildcard and names are the subscription answered (SotW LDS and CDS).
	wildcard bool
	names    map[string]struct{}

	nonce   string
	sentAt  time.Time
	handled bool
}

type nackRecord struct {
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// resourceSet is a client's resources of one type: a sorted list (SotW,
// shared with the response) or a map (delta, accumulated).
type resourceSet struct {
	list []*entry
	m    map[string]*entry
}

func (s *resourceSet) get(name string) *entry {
	if s.m != nil {
		return s.m[name]
	}
	i := sort.Search(len(s.list), func(i int) bool { return s.list[i].name >= name })
	if i < len(s.list) && s.list[i].name == name {
		return s.list[i]
	}
	return nil
}

func (s *resourceSet) all() []*entry {
	if s.m == nil {
		return s.list
	}
	out := make([]*entry, 0, len(s.m))
	for _, e := range s.m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (s *resourceSet) len() int {
	if s.m != nil {
		return len(s.m)
	}
	return len(s.list)
}

// apply records a delta response.
func (s *resourceSet) apply(m *responseMeta) {
	if s.m == nil {
		s.m = make(map[string]*entry, len(m.entries))
	}
	for _, e := range m.entries {
		s.m[e.name] = e
	}
	for _, n := range m.removed {
		delete(s.m, n)
	}
}

func sortedNames(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
