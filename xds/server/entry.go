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
// their bytes); a proto message returned twice by the translator (the same
// pointer) within one generation is marshaled once.
type internTable struct {
	mu    sync.Mutex
	byKey map[entryKey]*entry
	byPtr map[types.Resource]*entry

	marshals  atomic.Int64
	onMarshal func(typeURL string)
}

func newInternTable(onMarshal func(typeURL string)) *internTable {
	return &internTable{
		byKey:     map[entryKey]*entry{},
		byPtr:     map[types.Resource]*entry{},
		onMarshal: onMarshal,
	}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// intern returns the entry of res, marshaling it unless this generation has
// seen the same message already.
func (t *internTable) intern(typeURL, name string, res types.Resource) (*entry, error) {
	t.mu.Lock()
	e, ok := t.byPtr[res]
	t.mu.Unlock()
	if ok && e.typeURL == typeURL && e.name == name {
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
	if e, ok := t.byKey[key]; ok {
		t.byPtr[res] = e
		return e, nil
	}
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
	t.byPtr[res] = e
	return e, nil
}

// beginGeneration forgets message identities: a translator may build new
// messages at the addresses of old ones.
func (t *internTable) beginGeneration() {
	t.mu.Lock()
	t.byPtr = map[types.Resource]*entry{}
	t.mu.Unlock()
}

// prune keeps only the entries of the views still in use, so the table does
// not grow with history. Entries held elsewhere (by streams) stay valid.
func (t *internTable) prune(keep []*classView) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byKey := make(map[entryKey]*entry, len(t.byKey))
	for _, v := range keep {
		for _, tv := range v.types {
			for _, e := range tv.entries {
				byKey[entryKey{typeURL: e.typeURL, name: e.name, version: e.version}] = e
			}
		}
	}
	t.byKey = byKey
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
