package translate

import (
	"github.com/sluice-mesh/sluice/mesh"
)

// Fluent fixtures for table tests.

type serviceFixture struct{ *mesh.Service }

func service(ns, name string) serviceFixture {
	return serviceFixture{&mesh.Service{Namespace: ns, Name: name}}
}

func (f serviceFixture) withPort(port uint32, p mesh.Protocol) serviceFixture {
	f.Ports = append(f.Ports, mesh.Port{Port: port, Protocol: p})
	return f
}

func (f serviceFixture) withClusterIPs(ips ...string) serviceFixture {
	f.ClusterIPs = append(f.ClusterIPs, ips...)
	return f
}

func (f serviceFixture) withLB(lb mesh.LoadBalancing) serviceFixture {
	f.LB = lb
	return f
}

type snapshotFixture struct{ *mesh.Snapshot }

func snapshot(svcs ...serviceFixture) snapshotFixture {
	s := &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{}}
	for _, f := range svcs {
		s.Services = append(s.Services, f.Service)
	}
	return snapshotFixture{s}
}

func (f snapshotFixture) withEndpoints(ns, name string, port uint32, eps ...mesh.Endpoint) snapshotFixture {
	k := mesh.PortKey{Namespace: ns, Name: name, Port: port}
	f.Endpoints[k] = append(f.Endpoints[k], eps...)
	return f
}

func ep(addr string, port uint32, zone string, h mesh.Health) mesh.Endpoint {
	return mesh.Endpoint{Address: addr, Port: port, Zone: zone, Health: h}
}
