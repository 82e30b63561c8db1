package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sluice-mesh/sluice/mesh"
)

func TestFastPathGuard(t *testing.T) {
	key := mesh.PortKey{Namespace: "ns", Name: "api", Port: 9090}
	snap := func(eps ...mesh.Endpoint) *mesh.Snapshot {
		return &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{key: eps}}
	}
	a := mesh.Endpoint{Address: "10.244.1.2", Port: 9090, ServiceAccount: "api", Health: mesh.Healthy, Zone: "zone-a"}
	b := mesh.Endpoint{Address: "10.244.2.2", Port: 9090, ServiceAccount: "api", Health: mesh.Healthy, Zone: "zone-b"}

	var g fastPathGuard
	assert.False(t, g.endpointsOnly(snap(a, b), true), "the first update is never endpoints-only")
	drainingB := b
	drainingB.Health = mesh.Draining
	assert.True(t, g.endpointsOnly(snap(a, drainingB), true), "a health change keeps the fast path")
	movedB := b
	movedB.Zone = "zone-c"
	assert.True(t, g.endpointsOnly(snap(a, movedB), true), "a zone change keeps the fast path")
	assert.False(t, g.endpointsOnly(snap(a), true), "a removed address needs a full update")
	assert.False(t, g.endpointsOnly(snap(a, b), true), "a new address needs a full update")
	otherSA := b
	otherSA.ServiceAccount = "intruder"
	assert.False(t, g.endpointsOnly(snap(a, otherSA), true), "a new service account changes SAN matchers")
	assert.False(t, g.endpointsOnly(snap(a, otherSA), false), "discovery's full updates stay full")
}
