package discovery

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// benchInputs is a mesh of services × endpoints, each endpoint backed by a
// pod on one of three zoned nodes.
func benchInputs(services, endpoints int) Inputs {
	var in Inputs
	for z := range 3 {
		in.Nodes = append(in.Nodes, newNode(fmt.Sprintf("node-%d", z), fmt.Sprintf("zone-%d", z)))
	}
	for s := range services {
		ns := fmt.Sprintf("ns-%d", s%20)
		name := fmt.Sprintf("svc-%d", s)
		in.Services = append(in.Services, newService(ns, name).clusterIP(fmt.Sprintf("10.96.%d.%d", s/250, s%250)).
			port("http", 80).port("grpc", 9090).annotate(AnnotationLBPolicy, "least_request").obj)
		in.EndpointSlices = append(in.EndpointSlices, benchSlice(ns, name, s, endpoints, -1))
		for e := range endpoints {
			in.Pods = append(in.Pods, newPod(ns, fmt.Sprintf("%s-%d", name, e), fmt.Sprintf("node-%d", e%3), name,
				map[string]string{"app": name}))
		}
	}
	return in
}

// benchSlice is the slice of service s; endpoint notReadyIndex (if any) is not ready.
func benchSlice(ns, name string, s, endpoints, notReadyIndex int) *discoveryv1.EndpointSlice {
	slice := newSlice(ns, name+"-abcde", name).port("http", 8080).port("grpc", 9090)
	for e := range endpoints {
		opts := []endpointOpt{forPod(fmt.Sprintf("%s-%d", name, e))}
		if e == notReadyIndex {
			opts = append(opts, notReady())
		}
		slice = slice.endpoint(fmt.Sprintf("10.%d.%d.%d", 1+s/250, s%250, 1+e), opts...)
	}
	return slice.obj
}

// BenchmarkBuildSnapshot builds 1,000 services × 10 endpoints from scratch.
func BenchmarkBuildSnapshot(b *testing.B) {
	in := benchInputs(1000, 10)
	b.ReportAllocs()
	for b.Loop() {
		snap, problems := BuildSnapshot(in)
		if len(snap.Services) != 1000 || len(problems) != 0 {
			b.Fatalf("%d services, problems %v", len(snap.Services), problems)
		}
	}
}

// BenchmarkBuildEndpointsOnly measures the fast path: one endpoint of one
// of 1,000 services changes readiness, and the next snapshot is built.
func BenchmarkBuildEndpointsOnly(b *testing.B) {
	store, bld := benchStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := i % 1000
		name := fmt.Sprintf("svc-%d", s)
		if err := store.Upsert(benchSlice(fmt.Sprintf("ns-%d", s%20), name, s, 10, (i+i/1000)%10)); err != nil {
			b.Fatal(err)
		}
		if r := store.build(bld); !r.changed || !r.endpointsOnly {
			b.Fatalf("changed %t, endpoints only %t", r.changed, r.endpointsOnly)
		}
		i++
	}
}

// BenchmarkBuildServiceChange measures a full update: one of 1,000 services
// changes an annotation.
func BenchmarkBuildServiceChange(b *testing.B) {
	store, bld := benchStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := i % 1000
		svc := newService(fmt.Sprintf("ns-%d", s%20), fmt.Sprintf("svc-%d", s)).clusterIP(fmt.Sprintf("10.96.%d.%d", s/250, s%250)).
			port("http", 80).port("grpc", 9090).annotate(AnnotationLBPolicy, []string{"random", "least_request"}[i/1000%2]).obj
		if err := store.Upsert(svc); err != nil {
			b.Fatal(err)
		}
		if r := store.build(bld); !r.changed || r.endpointsOnly {
			b.Fatalf("changed %t, endpoints only %t", r.changed, r.endpointsOnly)
		}
		i++
	}
}

func benchStore(b *testing.B) (*Store, *builder) {
	in := benchInputs(1000, 10)
	store := NewStore()
	var objs []runtime.Object
	for _, o := range in.Nodes {
		objs = append(objs, o)
	}
	for _, o := range in.Pods {
		objs = append(objs, o)
	}
	for _, o := range in.Services {
		objs = append(objs, o)
	}
	for _, o := range in.EndpointSlices {
		objs = append(objs, o)
	}
	for _, o := range objs {
		if err := store.Upsert(o); err != nil {
			b.Fatal(err)
		}
	}
	bld := newBuilder()
	if r := store.build(bld); len(r.snapshot.Services) != 1000 {
		b.Fatal("initial build")
	}
	return store, bld
}
