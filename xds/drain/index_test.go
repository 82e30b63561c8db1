package drain

import (
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestIndexRemembersRemovedEndpointsForTheRetentionPeriod(t *testing.T) {
	x := newIndex()
	t0 := time.Unix(1000, 0)
	x.update(steady(), t0)
	if got := x.lookup(ns, "api-a", ""); len(got) != 1 {
		t.Fatalf("api-a: %v", got)
	}

	// api-a leaves the snapshot: remembered as gone.
	x.update(snapshot(map[string][]mesh.Endpoint{"api": {ep("api-b", ipB, mesh.Healthy)}}), t0.Add(time.Second))
	got := x.lookup(ns, "api-a", "")
	st := got[endpointKey{port: apiPort, addr: ipA}]
	if st == nil || !st.goneAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("api-a after removal: %+v", got)
	}
	if present, gone := x.size(); present != 1 || gone != 2 {
		t.Fatalf("size = %d present, %d gone; want 1, 2", present, gone)
	}

	// Pruned only after the retention period.
	x.prune(t0.Add(time.Minute), time.Minute)
	if len(x.lookup(ns, "api-a", "")) != 1 {
		t.Fatal("pruned before the retention period")
	}
	x.prune(t0.Add(2*time.Minute), time.Minute)
	if got := x.lookup(ns, "api-a", ""); len(got) != 0 {
		t.Fatalf("not pruned: %v", got)
	}
	if len(x.byAddr) != 1 || len(x.byPod) != 1 || len(x.gone) != 0 {
		t.Fatalf("leftovers: byAddr %v byPod %v gone %v", x.byAddr, x.byPod, x.gone)
	}
}

func TestIndexEndpointThatComesBackIsNotPruned(t *testing.T) {
	x := newIndex()
	t0 := time.Unix(1000, 0)
	x.update(steady(), t0)
	x.update(snapshot(map[string][]mesh.Endpoint{"api": {ep("api-b", ipB, mesh.Healthy)}}), t0)
	x.update(steady(), t0.Add(time.Second))
	x.prune(t0.Add(time.Hour), time.Minute)
	st := x.lookup(ns, "api-a", "")[endpointKey{port: apiPort, addr: ipA}]
	if st == nil || !st.goneAt.IsZero() || st.health != mesh.Healthy {
		t.Fatalf("api-a back: %+v", st)
	}
}

func TestIndexAddressChangingPods(t *testing.T) {
	x := newIndex()
	now := time.Unix(1000, 0)
	x.update(snapshot(map[string][]mesh.Endpoint{"api": {ep("old", ipA, mesh.Draining)}}), now)
	// The address is reused by a new pod.
	x.update(snapshot(map[string][]mesh.Endpoint{"api": {ep("new", ipA, mesh.Healthy)}}), now)
	if got := x.lookup(ns, "old", ""); len(got) != 0 {
		t.Fatalf("old pod still linked: %v", got)
	}
	if got := x.lookup(ns, "new", ""); len(got) != 1 {
		t.Fatalf("new pod: %v", got)
	}
}

func TestIndexDuplicateAddressKeepsTheMostRoutableHealth(t *testing.T) {
	x := newIndex()
	a := ep("api-a", ipA, mesh.Draining)
	b := ep("api-a", ipA, mesh.Healthy)
	b.Port = 9091
	x.update(snapshot(map[string][]mesh.Endpoint{"api": {a, b}}), time.Unix(1, 0))
	if st := x.endpoints[endpointKey{port: apiPort, addr: ipA}]; st.health != mesh.Healthy {
		t.Fatalf("health %v, want healthy", st.health)
	}
}

func TestIndexSkipsUnchangedPorts(t *testing.T) {
	x := newIndex()
	s1 := steady()
	x.update(s1, time.Unix(1, 0))
	// A snapshot sharing the port's slice is taken as unchanged: prove it by
	// changing the shared array behind the index's back (never done outside
	// this test: snapshots are immutable).
	s2 := &mesh.Snapshot{Services: s1.Services, Endpoints: map[mesh.PortKey][]mesh.Endpoint{apiPort: s1.Endpoints[apiPort]}}
	s1.Endpoints[apiPort][0].Health = mesh.Unhealthy
	x.update(s2, time.Unix(2, 0))
	if st := x.endpoints[endpointKey{port: apiPort, addr: ipA}]; st.health != mesh.Healthy {
		t.Fatalf("unchanged slice was re-read: %v", st.health)
	}
}

func TestIndexCanonicalAddresses(t *testing.T) {
	x := newIndex()
	x.update(snapshot(map[string][]mesh.Endpoint{"api": {ep("api-a", "::ffff:10.244.1.1", mesh.Healthy)}}), time.Unix(1, 0))
	if got := x.lookup("", "", ipA); len(got) != 1 {
		t.Fatalf("lookup by the unmapped address: %v", got)
	}
}

// size counts the endpoints present and remembered as gone.
func (x *index) size() (present, gone int) {
	for _, st := range x.endpoints {
		if st.goneAt.IsZero() {
			present++
		} else {
			gone++
		}
	}
	return present, gone
}
