package translate

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// envoyListeners returns the listeners of an Envoy sidecar: the outbound
// listener iptables redirects to, one virtual listener per service
// ClusterIP and port, a wildcard virtual listener per port of a headless
// HTTP service, and the inbound listener. See doc.go for the model.
func (t *translator) envoyListeners(ports []servicePort) []types.Resource {
	out := []types.Resource{t.outboundListener()}
	out = append(out, t.virtualListeners(ports)...)
	out = append(out, t.inboundListener(ports))
	return out
}

// outboundListener accepts every redirected outbound connection and hands
// it to the listener of its original destination (use_original_dst); a
// connection no listener claims is forwarded unchanged.
func (t *translator) outboundListener() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             OutboundListenerName,
		Address:          socketAddress("0.0.0.0", OutboundListenerPort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    PassthroughCluster,
			Filters: []*listenerv3.Filter{t.tcpProxyFilter(PassthroughCluster, PassthroughCluster)},
		},
	}
}

// virtualListeners are not bound to a socket (bind_to_port false): they
// only receive connections the outbound listener hands over. HTTP ports
// route by Host through the port's shared route configuration; other ports
// are proxied as TCP to the service port's cluster.
func (t *translator) virtualListeners(ports []servicePort) []types.Resource {
	var out []types.Resource
	taken := map[netip.AddrPort]string{}
	wildcard := map[uint32]bool{}
	var wildcardPorts []uint32
	for _, sp := range ports {
		if !sp.port.Protocol.IsHTTP() && sp.port.Protocol != mesh.ProtocolTCP {
			t.warnf("%s: unknown protocol %q on port %d: proxied as TCP", sp.svc.Key(), sp.port.Protocol, sp.key.Port)
		}
		if len(sp.svc.ClusterIPs) == 0 {
			if !sp.port.Protocol.IsHTTP() {
				t.warnf("%s: headless service port %d is not HTTP: Envoy forwards it to the address the client chose, without load balancing", sp.svc.Key(), sp.key.Port)
				continue
			}
			if sp.key.Port == OutboundListenerPort || sp.key.Port == InboundListenerPort {
				t.warnf("%s: headless service port %d is Envoy's own: not routed", sp.svc.Key(), sp.key.Port)
				continue
			}
			if !wildcard[sp.key.Port] {
				wildcard[sp.key.Port] = true
				wildcardPorts = append(wildcardPorts, sp.key.Port)
			}
			continue
		}
		for _, ip := range sp.svc.ClusterIPs {
			addr, err := netip.ParseAddr(ip)
			if err != nil {
				t.warnf("%s: cluster IP %q is not an IP address: skipped", sp.svc.Key(), ip)
				continue
			}
			addr = addr.Unmap()
			ap := netip.AddrPortFrom(addr, uint16(sp.key.Port))
			if other, dup := taken[ap]; dup {
				t.warnf("%s: %s is also the address of %s: not routed", sp.svc.Key(), ap, other)
				continue
			}
			taken[ap] = sp.svc.Key().String()
			out = append(out, t.virtualListener(addr.String(), sp))
		}
	}
	sortUint32(wildcardPorts)
	for _, port := range wildcardPorts {
		name := VirtualListenerName("0.0.0.0", port)
		out = append(out, &listenerv3.Listener{
			Name:             name,
			Address:          socketAddress("0.0.0.0", port),
			BindToPort:       wrapperspb.Bool(false),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{t.hcmFilter(t.rdsConnectionManager(name, EnvoyRouteName(port)))},
			}},
		})
	}
	return out
}

func (t *translator) virtualListener(ip string, sp servicePort) *listenerv3.Listener {
	name := VirtualListenerName(ip, sp.key.Port)
	var f *listenerv3.Filter
	if sp.port.Protocol.IsHTTP() {
		f = t.hcmFilter(t.rdsConnectionManager(name, EnvoyRouteName(sp.key.Port)))
	} else {
		cluster := ClusterName(sp.key, t.domain)
		f = t.tcpProxyFilter(cluster, cluster)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(ip, sp.key.Port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{f}}},
	}
}
