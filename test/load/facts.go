package load

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var hcmTypeURL = "type.googleapis.com/" + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())

// fact is what a proxy keeps of one resource: its name and what the
// harness's subscriptions and expectations need. Facts are read-only once
// built and shared by every proxy that received the same bytes.
type fact struct {
	typeURL string
	name    string
	// size is the payload's length in bytes.
	size int

	// CDS: the EDS resource to subscribe to ("" for a non-EDS cluster).
	edsName string
	// LDS: the route configurations its HttpConnectionManagers use, and the
	// listener's socket address ("ip:port", "" for an API listener).
	routeNames []string
	address    string
	// RDS: the clusters its routes send to, and for each virtual host
	// domain whose first route splits traffic, the split as
	// "<fqdn>=<weight>,..." sorted (fqdn of each cluster's service).
	clusters     []string
	vhostWeights map[string]string
	// EDS: the service the endpoints are for (the FQDN of an Istio-style
	// cluster name "outbound|<port>||<fqdn>"), and its endpoints by
	// "ip:port" with their health.
	service   string
	endpoints map[string]corev3.HealthStatus
}

// healthy reports whether addr ("ip:port") is in the endpoints and may take
// new requests (UNKNOWN or HEALTHY).
func (f *fact) healthy(addr string) bool {
	h, ok := f.endpoints[addr]
	return ok && (h == corev3.HealthStatus_UNKNOWN || h == corev3.HealthStatus_HEALTHY)
}

// decoder turns resource payloads into facts, once per distinct payload
// unless every is set.
type decoder struct {
	every bool

	mu    sync.RWMutex
	cache map[string]*fact
}

// maxCachedFacts bounds the cache; it is emptied when full (old generations
// of resources are not needed again).
const maxCachedFacts = 200_000

func newDecoder(every bool) *decoder {
	return &decoder{every: every, cache: map[string]*fact{}}
}

func (d *decoder) decode(a *anypb.Any) (*fact, error) {
	if d.every {
		return decodeFact(a)
	}
	key := a.GetTypeUrl() + "\x00" + string(a.GetValue())
	d.mu.RLock()
	f, ok := d.cache[key]
	d.mu.RUnlock()
	if ok {
		return f, nil
	}
	f, err := decodeFact(a)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if len(d.cache) >= maxCachedFacts {
		d.cache = map[string]*fact{}
	}
	d.cache[key] = f
	d.mu.Unlock()
	return f, nil
}

// decodeFact unmarshals one resource.
func decodeFact(a *anypb.Any) (*fact, error) {
	f := &fact{typeURL: a.GetTypeUrl(), size: len(a.GetValue())}
	var err error
	switch a.GetTypeUrl() {
	case resourcev3.ClusterType:
		err = f.decodeCluster(a.GetValue())
	case resourcev3.ListenerType:
		err = f.decodeListener(a.GetValue())
	case resourcev3.RouteType:
		err = f.decodeRoute(a.GetValue())
	case resourcev3.EndpointType:
		err = f.loadAssignment(a.GetValue())
	default:
		return nil, fmt.Errorf("unexpected resource type %s", a.GetTypeUrl())
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", a.GetTypeUrl(), err)
	}
	return f, nil
}

func (f *fact) decodeCluster(b []byte) error {
	var c clusterv3.Cluster
	if err := proto.Unmarshal(b, &c); err != nil {
		return err
	}
	f.name = c.GetName()
	if c.GetType() == clusterv3.Cluster_EDS {
		f.edsName = c.GetEdsClusterConfig().GetServiceName()
		if f.edsName == "" {
			f.edsName = c.GetName()
		}
	}
	return nil
}

func (f *fact) decodeListener(b []byte) error {
	var l listenerv3.Listener
	if err := proto.Unmarshal(b, &l); err != nil {
		return err
	}
	f.name = l.GetName()
	if sa := l.GetAddress().GetSocketAddress(); sa != nil {
		f.address = fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
	}
	seen := map[string]bool{}
	addHCM := func(a *anypb.Any) error {
		if a == nil || a.GetTypeUrl() != hcmTypeURL {
			return nil
		}
		var h hcmv3.HttpConnectionManager
		if err := proto.Unmarshal(a.GetValue(), &h); err != nil {
			return err
		}
		if n := h.GetRds().GetRouteConfigName(); n != "" && !seen[n] {
			seen[n] = true
			f.routeNames = append(f.routeNames, n)
		}
		return nil
	}
	if err := addHCM(l.GetApiListener().GetApiListener()); err != nil {
		return err
	}
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	for _, fc := range chains {
		for _, filter := range fc.GetFilters() {
			if err := addHCM(filter.GetTypedConfig()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fact) decodeRoute(b []byte) error {
	var rc routev3.RouteConfiguration
	if err := proto.Unmarshal(b, &rc); err != nil {
		return err
	}
	f.name = rc.GetName()
	seen := map[string]bool{}
	add := func(c string) {
		if c != "" && !seen[c] {
			seen[c] = true
			f.clusters = append(f.clusters, c)
		}
	}
	for _, vh := range rc.GetVirtualHosts() {
		for i, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			add(ra.GetCluster())
			var split []string
			for _, wc := range ra.GetWeightedClusters().GetClusters() {
				add(wc.GetName())
				split = append(split, fmt.Sprintf("%s=%d", serviceOfCluster(wc.GetName()), wc.GetWeight().GetValue()))
			}
			if i == 0 && len(split) > 0 {
				sort.Strings(split)
				if f.vhostWeights == nil {
					f.vhostWeights = map[string]string{}
				}
				for _, d := range vh.GetDomains() {
					f.vhostWeights[d] = strings.Join(split, ",")
				}
			}
		}
	}
	return nil
}

func (f *fact) loadAssignment(b []byte) error {
	var cla endpointv3.ClusterLoadAssignment
	if err := proto.Unmarshal(b, &cla); err != nil {
		return err
	}
	f.name = cla.GetClusterName()
	f.service = serviceOfCluster(f.name)
	f.endpoints = map[string]corev3.HealthStatus{}
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			f.endpoints[fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())] = lb.GetHealthStatus()
		}
	}
	return nil
}

// serviceOfCluster returns the FQDN of an Istio-style cluster name
// "outbound|<port>|<subset>|<fqdn>", else the name itself.
func serviceOfCluster(name string) string {
	if i := strings.LastIndexByte(name, '|'); i >= 0 {
		return name[i+1:]
	}
	return name
}
