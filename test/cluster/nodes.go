package cluster

import (
	"fmt"
	"net/netip"
	"sync"
)

// Labels the test kubelet puts on its nodes.
const (
	ZoneLabel     = "topology.kubernetes.io/zone"
	RegionLabel   = "topology.kubernetes.io/region"
	HostnameLabel = "kubernetes.io/hostname"
)

// DefaultRegion is the region of nodes that name none.
const DefaultRegion = "region-1"

// Node is a node the test kubelet registers and runs pods on.
type Node struct {
	Name string
	// Zone is the topology.kubernetes.io/zone label.
	Zone string
	// Region is the topology.kubernetes.io/region label; DefaultRegion if empty.
	Region string
	// Labels are extra labels.
	Labels map[string]string
}

// DefaultNodes are two nodes in two zones: node-a in zone-a, node-b in zone-b.
func DefaultNodes() []Node {
	return []Node{{Name: "node-a", Zone: "zone-a"}, {Name: "node-b", Zone: "zone-b"}}
}

// subnets hands out the /24s of PodNetworkCIDR (10.244.N.0/24, N from 1
// to 255) to nodes. It is per process because the network namespace is:
// clusters started side by side in one test binary must not give two pods
// the same address.
var subnets subnetPool

type subnetPool struct {
	mu   sync.Mutex
	used [256]bool
}

// take reserves n subnets and returns their third octets.
func (p *subnetPool) take(n int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var got []byte
	for o := 1; o < 256 && len(got) < n; o++ {
		if !p.used[o] {
			got = append(got, byte(o))
		}
	}
	if len(got) < n {
		return nil, fmt.Errorf("test kubelet: %d nodes wanted, only %d pod subnets of %s left in this process", n, len(got), PodNetworkCIDR)
	}
	for _, o := range got {
		p.used[o] = true
	}
	return got, nil
}

func (p *subnetPool) give(octets []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range octets {
		p.used[o] = false
	}
}

// nodeState is a registered node and its pod address allocator. A node
// given subnet N has address 10.244.0.N and pod CIDR 10.244.N.0/24.
type nodeState struct {
	Node
	ip      netip.Addr
	podCIDR netip.Prefix

	mu   sync.Mutex
	used map[netip.Addr]bool
	next int // host part to try first; allocation walks the range round robin
}

// newNodeStates pairs nodes with subnets (third octets, one per node).
func newNodeStates(nodes []Node, subnets []byte) ([]*nodeState, error) {
	if len(subnets) != len(nodes) {
		return nil, fmt.Errorf("test kubelet: %d subnets for %d nodes", len(subnets), len(nodes))
	}
	seen := map[string]bool{}
	var states []*nodeState
	for i, n := range nodes {
		if n.Name == "" || seen[n.Name] {
			return nil, fmt.Errorf("test kubelet: node %d: empty or duplicate name %q", i, n.Name)
		}
		seen[n.Name] = true
		if n.Region == "" {
			n.Region = DefaultRegion
		}
		states = append(states, &nodeState{
			Node:    n,
			ip:      netip.AddrFrom4([4]byte{10, 244, 0, subnets[i]}),
			podCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, subnets[i], 0}), 24),
			used:    map[netip.Addr]bool{},
			next:    1,
		})
	}
	return states, nil
}

func (n *nodeState) labels() map[string]string {
	l := map[string]string{HostnameLabel: n.Name, ZoneLabel: n.Zone, RegionLabel: n.Region}
	for k, v := range n.Labels {
		l[k] = v
	}
	if n.Zone == "" {
		delete(l, ZoneLabel)
	}
	return l
}

// allocateIP returns a free pod address (.1 to .254), preferring addresses
// not used recently so that a new pod rarely gets an old pod's address.
func (n *nodeState) allocateIP() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	base := n.podCIDR.Addr().As4()
	for i := range 254 {
		host := (n.next-1+i)%254 + 1
		a := base
		a[3] = byte(host)
		ip := netip.AddrFrom4(a)
		if !n.used[ip] {
			n.used[ip] = true
			n.next = host%254 + 1
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s: pod CIDR %s exhausted", n.Name, n.podCIDR)
}

func (n *nodeState) releaseIP(ip netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.used, ip)
}
