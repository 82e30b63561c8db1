// Package mesh is Sluice's intermediate representation: the services, ports,
// endpoints and load-balancing settings that discovery produces and that the
// xDS translators consume.
//
// It holds no Kubernetes and no Envoy types (imports_test.go checks this), so
// translation can be tested from plain values and a source other than
// Kubernetes (the file source) produces exactly the same model.
//
// Every value reachable from a Snapshot is immutable once the snapshot is
// published: producers build a new Snapshot instead of editing one.
package mesh
