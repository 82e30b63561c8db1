package translate

import (
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/mesh"
)

// grpcChannelIDKey is the filter-state key grpc-go hashes on to keep all
// RPCs of one channel on one endpoint (gRFC A42).
const grpcChannelIDKey = "io.grpc.channel_id"

// hashKind is what a ring-hash route hashes on.
type hashKind int

const (
	hashNone hashKind = iota // a random hash per request
	hashHeader
	hashCookie
	hashSourceIP
	hashChannelID // grpc-go only
)

// lbConfig is a service's load-balancing settings resolved for one proxy
// kind: unsupported or invalid values are already replaced (with a warning).
type lbConfig struct {
	policy        clusterv3.Cluster_LbPolicy
	hash          hashKind
	hashName      string // header or cookie name
	localityAware bool
	outlier       *mesh.OutlierDetection
	// connectTimeout is zero when unset.
	connectTimeout time.Duration
	// slowStart is zero when off (always for proxyless gRPC).
	slowStart time.Duration
}

// lbFor resolves the load-balancing settings of a service for the proxy's
// kind, once per translation, recording a warning for every setting the
// kind cannot honour.
func (t *translator) lbFor(svc *mesh.Service) *lbConfig {
	if c, ok := t.lb[svc.Key()]; ok {
		return c
	}
	c := t.resolveLB(svc.Key().String(), svc.LB)
	t.lb[svc.Key()] = c
	return c
}

func (t *translator) resolveLB(who string, lb mesh.LoadBalancing) *lbConfig {
	grpc := t.kind == mesh.ProxyGRPC
	c := &lbConfig{}
	switch lb.Policy {
	case "", mesh.LBRoundRobin:
		c.policy = clusterv3.Cluster_ROUND_ROBIN
	case mesh.LBLeastRequest:
		c.policy = clusterv3.Cluster_LEAST_REQUEST
	case mesh.LBRingHash:
		c.policy = clusterv3.Cluster_RING_HASH
	case mesh.LBRandom:
		if grpc {
			// grpc-go NACKs a cluster with lb_policy RANDOM.
			t.warnf("%s: lb policy random is not supported by proxyless gRPC: using round_robin", who)
			c.policy = clusterv3.Cluster_ROUND_ROBIN
		} else {
			c.policy = clusterv3.Cluster_RANDOM
		}
	default:
		t.warnf("%s: unknown lb policy %q: using round_robin", who, lb.Policy)
		c.policy = clusterv3.Cluster_ROUND_ROBIN
	}

	if c.policy == clusterv3.Cluster_RING_HASH {
		t.resolveHash(who, lb.Hash, c)
	} else if lb.Hash != nil {
		t.warnf("%s: hash policy is ignored: lb policy is %s, not ring_hash", who, strings.ToLower(c.policy.String()))
	}

	if lb.LocalityAware {
		switch {
		case t.proxy.Zone == "":
			t.warnf("proxy %q has no zone: locality-aware services are balanced across all zones", t.proxy.ID)
		case grpc:
			c.localityAware = true
			t.warnf("%s: proxyless gRPC fails over to other zones only when no endpoint of zone %q is reachable; it does not spill over gradually as the zone's healthy share drops", who, t.proxy.Zone)
		default:
			c.localityAware = true
		}
	}

	if o := lb.Outlier; o != nil {
		od := *o
		if od.Interval < 0 {
			t.warnf("%s: negative outlier detection interval %s: using the default", who, od.Interval)
			od.Interval = 0
		}
		if od.BaseEjectionTime < 0 {
			t.warnf("%s: negative outlier detection base ejection time %s: using the default", who, od.BaseEjectionTime)
			od.BaseEjectionTime = 0
		}
		if od.MaxEjectionPercent > 100 {
			t.warnf("%s: outlier detection max ejection percent %d is over 100: using 100", who, od.MaxEjectionPercent)
			od.MaxEjectionPercent = 100
		}
		if grpc && od.Consecutive5xx > 0 {
			t.warnf("%s: proxyless gRPC does not eject on consecutive errors (consecutive_5xx %d): it ejects by success rate instead", who, od.Consecutive5xx)
			od.Consecutive5xx = 0
		}
		c.outlier = &od
	}

	switch {
	case lb.ConnectTimeout < 0:
		t.warnf("%s: negative connect timeout %s: using the default", who, lb.ConnectTimeout)
	case lb.ConnectTimeout > 0 && grpc:
		t.warnf("%s: connect timeout %s is not supported by proxyless gRPC: grpc-go uses its own connection backoff", who, lb.ConnectTimeout)
	case lb.ConnectTimeout > 0 && lb.ConnectTimeout < time.Millisecond:
		t.warnf("%s: connect timeout %s is below 1ms: using 1ms", who, lb.ConnectTimeout)
		c.connectTimeout = time.Millisecond
	default:
		c.connectTimeout = lb.ConnectTimeout
	}

	switch {
	case lb.SlowStart == 0:
	case lb.SlowStart < 0:
		t.warnf("%s: negative slow start window %s: slow start off", who, lb.SlowStart)
	case grpc:
		t.warnf("%s: slow start is not supported by proxyless gRPC: new endpoints get their full share at once", who)
	case c.policy != clusterv3.Cluster_ROUND_ROBIN && c.policy != clusterv3.Cluster_LEAST_REQUEST:
		t.warnf("%s: slow start works with round_robin and least_request only, not %s: slow start off", who, strings.ToLower(c.policy.String()))
	case lb.SlowStart < time.Millisecond:
		t.warnf("%s: slow start window %s is below 1ms: using 1ms", who, lb.SlowStart)
		c.slowStart = time.Millisecond
	default:
		c.slowStart = lb.SlowStart
	}
	return c
}

// resolveHash picks what a ring hash hashes on. The model says exactly one
// field of HashPolicy is set; if several are, the first of header, cookie,
// source IP wins.
func (t *translator) resolveHash(who string, h *mesh.HashPolicy, c *lbConfig) {
	grpc := t.kind == mesh.ProxyGRPC
	if h == nil {
		t.warnf("%s: ring_hash without a hash policy: every request hashes to a random endpoint", who)
		return
	}
	n := 0
	if h.Header != "" {
		n++
	}
	if h.Cookie != "" {
		n++
	}
	if h.SourceIP {
		n++
	}
	if n > 1 {
		t.warnf("%s: hash policy sets %d keys: using the first of header, cookie, source IP", who, n)
	}
	switch {
	case h.Header != "":
		name := strings.ToLower(strings.TrimSpace(h.Header))
		if !validHeaderName(name) {
			t.warnf("%s: invalid hash header name %q: every request hashes to a random endpoint", who, h.Header)
			return
		}
		c.hash, c.hashName = hashHeader, name
	case h.Cookie != "" && grpc:
		t.warnf("%s: proxyless gRPC cannot hash on cookie %q: hashing on the client channel instead", who, h.Cookie)
		c.hash = hashChannelID
	case h.Cookie != "":
		if !validCookieName(h.Cookie) {
			t.warnf("%s: invalid hash cookie name %q: every request hashes to a random endpoint", who, h.Cookie)
			return
		}
		c.hash, c.hashName = hashCookie, h.Cookie
	case h.SourceIP && grpc:
		t.warnf("%s: proxyless gRPC cannot hash on the source IP: hashing on the client channel instead", who)
		c.hash = hashChannelID
	case h.SourceIP:
		c.hash = hashSourceIP
	default:
		t.warnf("%s: ring_hash without a hash key: every request hashes to a random endpoint", who)
	}
}

// validHeaderName accepts an HTTP header (or gRPC metadata) name usable as
// a hash key: an RFC 7230 token, lower case; pseudo-headers and binary
// gRPC metadata (-bin) are refused, grpc-go does not hash on them.
func validHeaderName(s string) bool {
	if s == "" || strings.HasSuffix(s, "-bin") {
		return false
	}
	for _, r := range s {
		if !isTokenChar(r) || (r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isTokenChar(r) {
			return false
		}
	}
	return true
}

func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

// hashPolicies returns the route hash policies for a ring-hash cluster, or
// nil.
func (c *lbConfig) hashPolicies() []*routev3.RouteAction_HashPolicy {
	var hp *routev3.RouteAction_HashPolicy
	switch c.hash {
	case hashHeader:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: c.hashName},
		}}
	case hashCookie:
		// A ttl (even zero) makes Envoy set the cookie when the request has
		// none; zero makes it a session cookie.
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: c.hashName, Ttl: durationpb.New(0)},
		}}
	case hashSourceIP:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
	case hashChannelID:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{
			FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: grpcChannelIDKey},
		}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}

// setSlowStart sets Envoy's slow start on a round robin or least request
// cluster: a newly ready endpoint's share of new requests ramps up over the
// window (linearly, aggression 1.0, from 10% of its weight).
func (c *lbConfig) setSlowStart(cl *clusterv3.Cluster) {
	if c.slowStart <= 0 {
		return
	}
	ss := &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(c.slowStart)}
	switch c.policy {
	case clusterv3.Cluster_ROUND_ROBIN:
		cl.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: ss}}
	case clusterv3.Cluster_LEAST_REQUEST:
		cl.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: ss}}
	}
}

// outlierDetection returns the cluster's outlier detection, or nil. Zero
// fields keep the client's defaults.
func (c *lbConfig) outlierDetection() *clusterv3.OutlierDetection {
	o := c.outlier
	if o == nil {
		return nil
	}
	od := &clusterv3.OutlierDetection{}
	if o.Consecutive5xx > 0 {
		od.Consecutive_5Xx = wrapperspb.UInt32(o.Consecutive5xx)
	}
	if o.Interval > 0 {
		od.Interval = durationpb.New(o.Interval)
	}
	if o.BaseEjectionTime > 0 {
		od.BaseEjectionTime = durationpb.New(o.BaseEjectionTime)
	}
	if o.MaxEjectionPercent > 0 {
		od.MaxEjectionPercent = wrapperspb.UInt32(o.MaxEjectionPercent)
	}
	return od
}
