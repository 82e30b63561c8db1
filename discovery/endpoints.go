package discovery

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// builtEndpoints is the output of building the endpoints of one service.
type builtEndpoints struct {
	// ports has an entry, possibly nil, for every port of the service.
	ports    map[mesh.PortKey][]mesh.Endpoint
	problems []Problem
	// pods are the pods the service's endpoints refer to, known or not, so
	// that a change of one of them rebuilds this service's endpoints.
	pods []objectKey
}

// endpointHealth maps EndpointSlice conditions to a health state. Nil
// conditions mean what the API says: ready and serving default to true,
// terminating to false.
//
//	terminating  serving  ready  →  health
//	yes          yes      any       Draining   (in-flight requests finish)
//	yes          no       any       Unhealthy
//	no           any      yes       Healthy
//	no           yes      no        Draining   (serving but not ready)
//	no           no       no        Unhealthy
func endpointHealth(c discoveryv1.EndpointConditions) mesh.Health {
	ready := c.Ready == nil || *c.Ready
	serving := c.Serving == nil || *c.Serving
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case terminating && serving:
		return mesh.Draining
	case terminating:
		return mesh.Unhealthy
	case ready:
		return mesh.Healthy
	case serving:
		return mesh.Draining
	default:
		return mesh.Unhealthy
	}
}

// buildEndpoints builds the endpoints of the service with key k from its
// EndpointSlices. svc is the service's model, nil when the service is not
// served; serviceExists says whether a Service object exists at all (slices
// of a Service that is not served, say UDP-only, are ignored silently).
//
// Only the first address of an endpoint is used: the API defines no
// semantics for the others and the EndpointSlice controller writes exactly
// one. An address found in several slices (during a transition) is kept
// once, with the healthiest state.
func buildEndpoints(k mesh.ServiceKey, svc *mesh.Service, serviceExists bool, idx *objectIndex) builtEndpoints {
	var out builtEndpoints
	slicesOfService := idx.slicesByService[k]
	if svc == nil {
		if serviceExists {
			return out
		}
		for _, name := range slices.Sorted(maps.Keys(slicesOfService)) {
			out.problems = append(out.problems, unknownServiceProblem(slicesOfService[name]))
		}
		return out
	}

	n := 0
	for _, slice := range slicesOfService {
		n += len(slice.Endpoints)
	}
	// Ports are referred to by their index in svc.Ports while building.
	portByName := make(map[string]int, len(svc.Ports))
	eps := make([][]mesh.Endpoint, len(svc.Ports))
	for i, p := range svc.Ports {
		portByName[p.Name] = i
		if n > 0 {
			eps[i] = make([]mesh.Endpoint, 0, n)
		}
	}
	// seen maps a port and an endpoint address:port to its index in eps.
	type seenKey struct {
		port int
		addr netip.AddrPort
	}
	seen := make(map[seenKey]int, n*len(svc.Ports))
	podSeen := make(map[objectKey]bool, n)
	out.pods = make([]objectKey, 0, n)

	for _, name := range slices.Sorted(maps.Keys(slicesOfService)) {
		slice := slicesOfService[name]
		report := func(reason, format string, args ...any) {
			out.problems = append(out.problems, Problem{
				Kind: "EndpointSlice", Namespace: slice.Namespace, Name: slice.Name, UID: string(slice.UID),
				Reason: reason, Message: fmt.Sprintf(format, args...),
			})
		}
		if slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6 {
			report(ReasonInvalidEndpoint, "address type %q is not supported (want IPv4 or IPv6); slice ignored", slice.AddressType)
			continue
		}
		targets := slicePorts(slice, portByName, report)
		if len(targets) == 0 {
			continue
		}
		var invalid []string
		for i := range slice.Endpoints {
			ep := &slice.Endpoints[i]
			addr, ok := endpointAddress(ep, slice.AddressType)
			if !ok {
				invalid = append(invalid, fmt.Sprint(ep.Addresses))
				continue
			}
			base := mesh.Endpoint{Address: addr.String(), Health: endpointHealth(ep.Conditions)}
			nodeName := ""
			if ep.NodeName != nil {
				nodeName = *ep.NodeName
			}
			if ref := ep.TargetRef; ref != nil && (ref.Kind == "Pod" || ref.Kind == "") && ref.Name != "" {
				pk := objectKey{cmp.Or(ref.Namespace, slice.Namespace), ref.Name}
				if !podSeen[pk] {
					podSeen[pk] = true
					out.pods = append(out.pods, pk)
				}
				base.Pod = ref.Name
				if pod := idx.pods[pk]; pod != nil {
					base.ServiceAccount = cmp.Or(pod.Spec.ServiceAccountName, "default")
					base.Labels = pod.Labels
					nodeName = cmp.Or(nodeName, pod.Spec.NodeName)
				}
			}
			if ep.Zone != nil && *ep.Zone != "" {
				base.Zone = *ep.Zone
			} else if node := idx.nodes[nodeName]; node != nil {
				base.Zone = nodeZone(node)
			}
			for _, t := range targets {
				e := base
				e.Port = t.port
				sk := seenKey{t.index, netip.AddrPortFrom(addr, uint16(t.port))}
				if i, dup := seen[sk]; dup {
					if e.Health < eps[t.index][i].Health {
						eps[t.index][i] = e
					}
					continue
				}
				seen[sk] = len(eps[t.index])
				eps[t.index] = append(eps[t.index], e)
			}
		}
		if len(invalid) > 0 {
			report(ReasonInvalidEndpoint, "%d endpoint(s) without a valid %s address skipped, first %s",
				len(invalid), slice.AddressType, invalid[0])
		}
	}
	out.ports = make(map[mesh.PortKey][]mesh.Endpoint, len(svc.Ports))
	for i, p := range svc.Ports {
		slices.SortFunc(eps[i], func(a, b mesh.Endpoint) int {
			return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
		})
		if len(eps[i]) == 0 {
			eps[i] = nil
		} else {
			eps[i] = slices.Clip(eps[i])
		}
		out.ports[mesh.PortKey{Namespace: k.Namespace, Name: k.Name, Port: p.Port}] = eps[i]
	}
	return out
}

// slicePort is a port of an EndpointSlice matched to a service port.
type slicePort struct {
	// index of the service port in mesh.Service.Ports.
	index int
	port  uint32
}

// slicePorts matches the ports of a slice to the service's ports by name.
func slicePorts(slice *discoveryv1.EndpointSlice, portByName map[string]int,
	report func(reason, format string, args ...any)) []slicePort {
	var out []slicePort
	for _, p := range slice.Ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		index, ok := portByName[name]
		switch {
		case !ok:
			report(ReasonUnknownPort, "port %q matches no port of service %s by name; ignored", name, slice.Labels[discoveryv1.LabelServiceName])
		case p.Port == nil || *p.Port < 1 || *p.Port > 65535:
			report(ReasonInvalidPort, "port %q has no number in 1-65535; ignored", name)
		default:
			out = append(out, slicePort{index: index, port: uint32(*p.Port)})
		}
	}
	return out
}

// endpointAddress returns the endpoint's first address if it is an IP of
// the slice's address type.
func endpointAddress(ep *discoveryv1.Endpoint, t discoveryv1.AddressType) (netip.Addr, bool) {
	if len(ep.Addresses) == 0 {
		return netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(ep.Addresses[0])
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	if (t == discoveryv1.AddressTypeIPv4) != addr.Is4() {
		return netip.Addr{}, false
	}
	return addr, true
}

func unknownServiceProblem(s *discoveryv1.EndpointSlice) Problem {
	p := Problem{Kind: "EndpointSlice", Namespace: s.Namespace, Name: s.Name, UID: string(s.UID), Reason: ReasonUnknownService}
	if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
		p.Message = fmt.Sprintf("service %s/%s does not exist; slice ignored", s.Namespace, name)
	} else {
		p.Message = fmt.Sprintf("no %s label names the slice's service; slice ignored", discoveryv1.LabelServiceName)
	}
	return p
}
