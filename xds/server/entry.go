package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// entry is one resource as it goes on the wire: marshaled once and shared,
// read-only, by every response and every stream that carries it.
type entry struct {
	typeURL string
	name    string
	// version is the hash of the deterministic marshaling of res.
	version string
	res     types.Resource
	any     *anypb.Any
	// delta wraps any for delta responses.
	delta *discoveryv3.Resource
}

type entryKey struct {
	typeURL, name, version string
}

// internTable makes each distinct resource one entry. A resource is
// marshaled once per translation that produced it (resources are compared by
// their bytes); a proto message returned twice by one translation (the same
// pointer) is marshaled once.
//
// Message identities are remembered per translation only (see seen): a
// table-wide map would keep every message of every class's translation
// alive until the next snapshot, which at 1,000 services and 1,000
// per-IP Envoy classes is gigabytes.
type internTable struct {
	mu    sync.Mutex
	byKey map[entryKey]*entry
	// pruned is the size of byKey after the last prune.
	pruned int

	marshals  atomic.Int64
	onMarshal func(typeURL string)
}

func newInternTable(onMarshal func(typeURL string)) *internTable {
	return &internTable{
		byKey:     map[entryKey]*entry{},
		onMarshal: onMarshal,
	}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// seen maps the messages of one translation to their entries.
type seen map[types.Resource]*entry

// intern returns the entry of res, marshaling it unless the translation
// returned the same message already (seen, which may be nil).
func (t *internTable) intern(typeURL, name string, res types.Resource, sn seen) (*entry, error) {
	if e, ok := sn[res]; ok && e.typeURL == typeURL && e.name == name {
		return e, nil
	}
	b, err := deterministic.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("marshaling %s %q: %w", typeURL, name, err)
	}
	t.marshals.Add(1)
	if t.onMarshal != nil {
		t.onMarshal(typeURL)
	}
	key := entryKey{typeURL: typeURL, name: name, version: hashBytes(b)}

	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[key]
	if !ok {
		a := &anypb.Any{TypeUrl: typeURL, Value: b}
		e = &entry{
			typeURL: typeURL,
			name:    name,
			version: key.version,
			res:     res,
			any:     a,
			delta:   &discoveryv3.Resource{Name: name, Version: key.version, Resource: a},
		}
		t.byKey[key] = e
	}
	if sn != nil {
		sn[res] = e
	}
	return e, nil
}

// prune keeps only the entries of the views still in use, so the table does
// not grow with history. Entries held elsewhere (by streams) stay valid.
func (t *internTable) prune(keep []*typeView) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byKey := make(map[entryKey]*entry, len(t.byKey))
	for _, tv := range keep {
		for _, e := range tv.entries {
			byKey[entryKey{typeURL: e.typeURL, name: e.name, version: e.version}] = e
		}
	}
	t.byKey = byKey
	t.pruned = len(byKey)
}

// grown reports whether the table doubled since it was last pruned. An
// endpoints-only snapshot adds only the changed EDS entries; pruning on
// each would go over every view's entries for a few new ones.
func (t *internTable) grown() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey) > 2*t.pruned+1024
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// hashEntries is the SotW version of a response: a hash over the names and
// versions it carries, in order.
func hashEntries(es []*entry) string {
	h := sha256.New()
	for _, e := range es {
		h.Write([]byte(e.name))
		h.Write([]byte{0})
		h.Write([]byte(e.version))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
