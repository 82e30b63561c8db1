package validate

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Resources validates a set of resources keyed by type URL (as
// translate.Result.Resources holds them): every resource deeply (Resource),
// then the rules Envoy applies when it loads them and ValidateAll does not
// know:
//
//   - names are unique within a type and not empty;
//   - listeners have unique socket addresses (bound or not: Envoy refuses
//     two listeners on one address) and at least one filter chain;
//   - filter chains of a listener have unique names and unique matches;
//   - a filter chain match on server_names or transport_protocol "tls"
//     needs the tls_inspector listener filter, and one on "tls" a TLS
//     transport socket; TLS transport sockets hold an UpstreamTlsContext
//     in clusters, a DownstreamTlsContext in filter chains (tls.go);
//   - an HttpConnectionManager has HTTP filters with unique names, the
//     router last;
//   - virtual hosts of a route configuration have unique names and
//     domains;
//   - routes: regular expressions compile (RE2 syntax, checked with Go's
//     regexp), weighted clusters have a positive total, header
//     modifications leave pseudo-headers (and a request's Host) alone,
//     at most one path rewrite;
//   - every cluster a route, a request mirror or tcp_proxy names exists
//     (except InvalidBackendCluster in a weighted split: Envoy answers its
//     share with the route's cluster_not_found_response_code), every
//     route configuration an HttpConnectionManager fetches over RDS
//     exists, and every EDS cluster has its ClusterLoadAssignment (which
//     may be empty).
//
// A reference is checked only when the referenced type URL is a key of
// res, so a partial set (say, EDS alone) can be validated on its own.
func Resources(res map[string][]types.Resource) error {
	s := index(res)
	s.checkListeners()
	s.checkRouteConfigs()
	s.checkClusters()
	return errors.Join(s.errs...)
}

// set is an indexed resource set and the errors found in it.
type set struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment

	// The names of each type, nil when the type is absent from the set.
	routeNames, clusterNames, endpointNames map[string]bool
	errs                                    []error
}

func (s *set) errorf(format string, args ...any) {
	s.errs = append(s.errs, fmt.Errorf(format, args...))
}

// index deep-validates every resource and sorts them by type, checking
// names. Types are visited in sorted order so errors come out stable.
func index(res map[string][]types.Resource) *set {
	s := &set{}
	typeURLs := make([]string, 0, len(res))
	for typ := range res {
		typeURLs = append(typeURLs, typ)
	}
	sort.Strings(typeURLs)
	for _, typ := range typeURLs {
		names := map[string]bool{}
		for i, r := range res[typ] {
			m, err := unwrap(r)
			if err != nil {
				s.errorf("%s[%d]: %w", shortType(typ), i, err)
				continue
			}
			name := nameOf(m)
			where := shortType(typ) + " " + strconv.Quote(name)
			if err := Resource(m); err != nil {
				s.errorf("%s: %w", where, err)
			}
			if typ != resourcev3.APITypePrefix+string(m.ProtoReflect().Descriptor().FullName()) {
				s.errorf("%s: a %s under type %s", where, m.ProtoReflect().Descriptor().FullName(), typ)
				continue
			}
			if name == "" {
				s.errorf("%s[%d]: empty name", shortType(typ), i)
			} else if names[name] {
				s.errorf("%s: duplicate name", where)
			}
			names[name] = true
			switch v := m.(type) {
			case *listenerv3.Listener:
				s.listeners = append(s.listeners, v)
			case *routev3.RouteConfiguration:
				s.routes = append(s.routes, v)
			case *clusterv3.Cluster:
				s.clusters = append(s.clusters, v)
			case *endpointv3.ClusterLoadAssignment:
				s.endpoints = append(s.endpoints, v)
			}
		}
		switch typ {
		case resourcev3.RouteType:
			s.routeNames = names
		case resourcev3.ClusterType:
			s.clusterNames = names
		case resourcev3.EndpointType:
			s.endpointNames = names
		}
	}
	return s
}

// unwrap returns the message a resource holds, opening an Any.
func unwrap(r types.Resource) (proto.Message, error) {
	if r == nil {
		return nil, errors.New("nil resource")
	}
	a, ok := r.(*anypb.Any)
	if !ok {
		return r, nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("open Any %q: %w", a.GetTypeUrl(), err)
	}
	return m, nil
}

func nameOf(m proto.Message) string {
	switch v := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return v.GetClusterName()
	case interface{ GetName() string }:
		return v.GetName()
	}
	return ""
}

func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route configuration"
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoints"
	}
	return typeURL
}

func (s *set) checkListeners() {
	addrs := map[string]string{}
	for _, l := range s.listeners {
		where := "listener " + strconv.Quote(l.GetName())
		if l.GetApiListener() != nil {
			s.checkNetworkConfig(where+": api_listener", l.GetApiListener().GetApiListener())
			continue
		}
		all := append([]*corev3.Address{l.GetAddress()}, additional(l)...)
		for _, a := range all {
			sa := a.GetSocketAddress()
			if sa == nil {
				continue
			}
			key := sa.GetProtocol().String() + " " + sa.GetAddress() + ":" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
			if other, dup := addrs[key]; dup {
				s.errorf("%s: address %s is also the address of listener %q", where, key, other)
			}
			addrs[key] = l.GetName()
		}
		if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
			s.errorf("%s: no filter chains", where)
		}
		s.checkFilterChains(where, l)
	}
}

func additional(l *listenerv3.Listener) []*corev3.Address {
	var out []*corev3.Address
	for _, a := range l.GetAdditionalAddresses() {
		out = append(out, a.GetAddress())
	}
	return out
}

func (s *set) checkFilterChains(where string, l *listenerv3.Listener) {
	names := map[string]bool{}
	matches := map[string]int{}
	needTLS := false
	for i, fc := range l.GetFilterChains() {
		fcWhere := where + ": filter chain " + strconv.Itoa(i)
		if n := fc.GetName(); n != "" {
			if names[n] {
				s.errorf("%s: duplicate filter chain name %q", fcWhere, n)
			}
			names[n] = true
		}
		key, err := proto.MarshalOptions{Deterministic: true}.Marshal(fc.GetFilterChainMatch())
		if err != nil {
			s.errorf("%s: marshal filter_chain_match: %w", fcWhere, err)
		} else if j, dup := matches[string(key)]; dup {
			s.errorf("%s: same filter_chain_match as filter chain %d", fcWhere, j)
		} else {
			matches[string(key)] = i
		}
		m := fc.GetFilterChainMatch()
		if len(m.GetServerNames()) > 0 || m.GetTransportProtocol() == "tls" {
			needTLS = true
		}
		s.checkNetworkFilters(fcWhere, fc.GetFilters())
		s.checkDownstreamSocket(fcWhere, fc)
	}
	if d := l.GetDefaultFilterChain(); d != nil {
		if d.GetFilterChainMatch() != nil {
			s.errorf("%s: default filter chain has a filter_chain_match", where)
		}
		s.checkNetworkFilters(where+": default filter chain", d.GetFilters())
	}
	if needTLS && !hasTLSInspector(l) {
		s.errorf("%s: a filter chain matches on server_names or transport_protocol tls but there is no tls_inspector listener filter", where)
	}
}

func hasTLSInspector(l *listenerv3.Listener) bool {
	for _, f := range l.GetListenerFilters() {
		if f.GetTypedConfig().MessageIs(&tlsinspectorv3.TlsInspector{}) {
			return true
		}
	}
	return false
}

func (s *set) checkNetworkFilters(where string, filters []*listenerv3.Filter) {
	if len(filters) == 0 {
		s.errorf("%s: no filters", where)
	}
	for i, f := range filters {
		s.checkNetworkConfig(where+": filter "+strconv.Itoa(i)+" "+strconv.Quote(f.GetName()), f.GetTypedConfig())
	}
}

// checkNetworkConfig checks the filters it knows: HttpConnectionManager
// and TcpProxy. Others were validated by Resource already.
func (s *set) checkNetworkConfig(where string, a *anypb.Any) {
	if a == nil {
		return
	}
	switch {
	case a.MessageIs(&hcmv3.HttpConnectionManager{}):
		hcm := &hcmv3.HttpConnectionManager{}
		if err := a.UnmarshalTo(hcm); err != nil {
			return // reported by Resource
		}
		s.checkHCM(where, hcm)
	case a.MessageIs(&tcpproxyv3.TcpProxy{}):
		tp := &tcpproxyv3.TcpProxy{}
		if err := a.UnmarshalTo(tp); err != nil {
			return
		}
		if c := tp.GetCluster(); c != "" {
			s.clusterRef(where, c)
		}
		for _, wc := range tp.GetWeightedClusters().GetClusters() {
			s.clusterRef(where, wc.GetName())
		}
	}
}

func (s *set) checkHCM(where string, hcm *hcmv3.HttpConnectionManager) {
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 {
		s.errorf("%s: no HTTP filters", where)
	}
	names := map[string]bool{}
	for i, f := range filters {
		if names[f.GetName()] {
			s.errorf("%s: duplicate HTTP filter name %q", where, f.GetName())
		}
		names[f.GetName()] = true
		isRouter := f.GetTypedConfig().MessageIs(&routerv3.Router{})
		last := i == len(filters)-1
		if isRouter && !last {
			s.errorf("%s: the router HTTP filter %q is not last", where, f.GetName())
		}
		if last && !isRouter {
			s.errorf("%s: the last HTTP filter %q is not the router (a terminal filter)", where, f.GetName())
		}
	}
	switch {
	case hcm.GetRds() != nil:
		name := hcm.GetRds().GetRouteConfigName()
		if s.routeNames != nil && !s.routeNames[name] {
			s.errorf("%s: route configuration %q does not exist", where, name)
		}
	case hcm.GetRouteConfig() != nil:
		s.checkRouteConfig(where+": route_config", hcm.GetRouteConfig())
	}
}

func (s *set) checkRouteConfigs() {
	for _, rc := range s.routes {
		s.checkRouteConfig("route configuration "+strconv.Quote(rc.GetName()), rc)
	}
}

func (s *set) checkRouteConfig(where string, rc *routev3.RouteConfiguration) {
	vhNames := map[string]bool{}
	domains := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		vhWhere := where + ": virtual host " + strconv.Quote(vh.GetName())
		if vhNames[vh.GetName()] {
			s.errorf("%s: duplicate virtual host name", vhWhere)
		}
		vhNames[vh.GetName()] = true
		for _, d := range vh.GetDomains() {
			if other, dup := domains[d]; dup {
				s.errorf("%s: domain %q is also a domain of virtual host %q", vhWhere, d, other)
			}
			domains[d] = vh.GetName()
		}
		s.checkHeaderMods(vhWhere, vh)
		for i, r := range vh.GetRoutes() {
			rWhere := vhWhere + ": route " + strconv.Itoa(i)
			s.checkRouteMatch(rWhere, r.GetMatch())
			s.checkHeaderMods(rWhere, r)
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			if c := ra.GetCluster(); c != "" {
				s.clusterRef(rWhere, c)
			}
			if wcs := ra.GetWeightedClusters(); wcs != nil {
				var total uint64
				for _, wc := range wcs.GetClusters() {
					total += uint64(wc.GetWeight().GetValue())
					if wc.GetName() == InvalidBackendCluster && !s.clusterNames[wc.GetName()] {
						continue // answered with cluster_not_found_response_code
					}
					s.clusterRef(rWhere, wc.GetName())
				}
				if total == 0 || total > math.MaxUint32 {
					s.errorf("%s: weighted clusters total weight %d must be in [1, 2^32)", rWhere, total)
				}
			}
			for _, m := range ra.GetRequestMirrorPolicies() {
				s.clusterRef(rWhere+": request mirror", m.GetCluster())
			}
			if ra.GetPrefixRewrite() != "" && ra.GetRegexRewrite() != nil {
				s.errorf("%s: both prefix_rewrite and regex_rewrite", rWhere)
			}
			if rr := ra.GetRegexRewrite(); rr != nil {
				s.checkRegex(rWhere+": regex_rewrite", rr.GetPattern().GetRegex())
			}
		}
	}
}

// InvalidBackendCluster is the cluster name the translator gives the share
// of a weighted split that belongs to unresolvable backends
// (translate.InvalidBackendCluster). For Envoy no such cluster exists, on
// purpose.
const InvalidBackendCluster = "InvalidBackendCluster"

// checkRouteMatch compiles the regular expressions of a route match; Envoy
// and grpc-go NACK the whole route configuration for one that does not.
func (s *set) checkRouteMatch(where string, m *routev3.RouteMatch) {
	if re := m.GetSafeRegex(); re != nil {
		s.checkRegex(where+": path", re.GetRegex())
	}
	for _, h := range m.GetHeaders() {
		//lint:ignore SA1019 a resource may still carry the deprecated field, and Envoy still reads it
		if re := h.GetSafeRegexMatch(); re != nil {
			s.checkRegex(where+": header "+strconv.Quote(h.GetName()), re.GetRegex())
		}
		if re := h.GetStringMatch().GetSafeRegex(); re != nil {
			s.checkRegex(where+": header "+strconv.Quote(h.GetName()), re.GetRegex())
		}
	}
	for _, q := range m.GetQueryParameters() {
		if re := q.GetStringMatch().GetSafeRegex(); re != nil {
			s.checkRegex(where+": query parameter "+strconv.Quote(q.GetName()), re.GetRegex())
		}
	}
}

func (s *set) checkRegex(where, re string) {
	if _, err := regexp.Compile(re); err != nil {
		s.errorf("%s: regex %q does not compile: %w", where, re, err)
	}
}

// headerModifier is a route or virtual host, which both modify headers.
type headerModifier interface {
	GetRequestHeadersToAdd() []*corev3.HeaderValueOption
	GetRequestHeadersToRemove() []string
	GetResponseHeadersToAdd() []*corev3.HeaderValueOption
	GetResponseHeadersToRemove() []string
}

// checkHeaderMods: Envoy refuses to add or remove pseudo-headers, and to
// touch a request's Host that way.
func (s *set) checkHeaderMods(where string, m headerModifier) {
	check := func(what, name string, request bool) {
		if strings.HasPrefix(name, ":") || (request && strings.EqualFold(name, "host")) {
			s.errorf("%s: %s header %q may not be modified", where, what, name)
		}
	}
	for _, h := range m.GetRequestHeadersToAdd() {
		check("request", h.GetHeader().GetKey(), true)
	}
	for _, n := range m.GetRequestHeadersToRemove() {
		check("request", n, true)
	}
	for _, h := range m.GetResponseHeadersToAdd() {
		check("response", h.GetHeader().GetKey(), false)
	}
	for _, n := range m.GetResponseHeadersToRemove() {
		check("response", n, false)
	}
}

func (s *set) clusterRef(where, name string) {
	if s.clusterNames != nil && !s.clusterNames[name] {
		s.errorf("%s: cluster %q does not exist", where, name)
	}
}

func (s *set) checkClusters() {
	for _, c := range s.clusters {
		s.checkUpstreamSocket("cluster "+strconv.Quote(c.GetName()), c.GetTransportSocket())
		if c.GetType() != clusterv3.Cluster_EDS || s.endpointNames == nil {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if !s.endpointNames[name] {
			s.errorf("cluster %q: EDS resource %q does not exist", c.GetName(), name)
		}
	}
}
