package cluster

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeStates(t *testing.T) {
	nodes, err := newNodeStates(DefaultNodes(), []byte{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if nodes[0].ip.String() != "10.244.0.1" || nodes[1].podCIDR.String() != "10.244.2.0/24" {
		t.Errorf("node-a ip %s, node-b pod CIDR %s", nodes[0].ip, nodes[1].podCIDR)
	}
	l := nodes[1].labels()
	if l[ZoneLabel] != "zone-b" || l[RegionLabel] != DefaultRegion || l[HostnameLabel] != "node-b" {
		t.Errorf("node-b labels = %v", l)
	}
	if _, err := newNodeStates([]Node{{Name: "x"}, {Name: "x"}}, []byte{1, 2}); err == nil {
		t.Error("duplicate node names accepted")
	}
}

func TestSubnetPool(t *testing.T) {
	var p subnetPool
	a, err := p.take(2)
	if err != nil || len(a) != 2 || a[0] != 1 || a[1] != 2 {
		t.Fatalf("take(2) = %v, %v", a, err)
	}
	b, err := p.take(253)
	if err != nil || b[0] != 3 || b[252] != 255 {
		t.Fatalf("take(253) = %v…, %v", b[:1], err)
	}
	if _, err := p.take(1); err == nil {
		t.Error("took a subnet from an exhausted pool")
	}
	p.give(a)
	if c, err := p.take(2); err != nil || c[0] != 1 || c[1] != 2 {
		t.Errorf("after give, take(2) = %v, %v", c, err)
	}
}

func TestAllocateIP(t *testing.T) {
	nodes, err := newNodeStates(DefaultNodes(), []byte{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	first, _ := n.allocateIP()
	second, _ := n.allocateIP()
	if first != netip.MustParseAddr("10.244.1.1") || second != netip.MustParseAddr("10.244.1.2") {
		t.Fatalf("first addresses %s, %s", first, second)
	}
	n.releaseIP(first)
	// A released address is reused only after the rest of the range.
	third, _ := n.allocateIP()
	if third != netip.MustParseAddr("10.244.1.3") {
		t.Errorf("after release got %s, want 10.244.1.3", third)
	}
	for range 251 {
		if _, err := n.allocateIP(); err != nil {
			t.Fatal(err)
		}
	}
	// Only the released first address is left.
	if ip, err := n.allocateIP(); err != nil || ip != first {
		t.Fatalf("last free address = %s, %v; want %s", ip, err, first)
	}
	if _, err := n.allocateIP(); err == nil {
		t.Error("allocation beyond the /24 succeeded")
	}
	n.releaseIP(second)
	if ip, err := n.allocateIP(); err != nil || ip != second {
		t.Errorf("after exhaustion and release got %s, %v; want %s", ip, err, second)
	}
}

func TestBinderPick(t *testing.T) {
	nodes, err := newNodeStates([]Node{{Name: "a1", Zone: "a"}, {Name: "b1", Zone: "b"}, {Name: "a2", Zone: "a"}}, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	b := &binder{nodes: nodes}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	var got []string
	for range 4 {
		n, err := b.pick(pod)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n.Name)
	}
	if want := []string{"a1", "b1", "a2", "a1"}; !equalStrings(got, want) {
		t.Errorf("round robin = %v, want %v", got, want)
	}
	pod.Spec.NodeSelector = map[string]string{ZoneLabel: "b"}
	for range 2 {
		if n, err := b.pick(pod); err != nil || n.Name != "b1" {
			t.Errorf("zone b pick = %v, %v", n, err)
		}
	}
	pod.Spec.NodeSelector = map[string]string{ZoneLabel: "c"}
	if _, err := b.pick(pod); err == nil {
		t.Error("pod with an unmatched nodeSelector was placed")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
