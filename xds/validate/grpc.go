package validate

import (
	"errors"
	"math"
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
)

// grpcChannelIDKey is the only filter-state key grpc-go hashes on.
const grpcChannelIDKey = "io.grpc.channel_id"

// GRPCResources validates resources meant for a proxyless grpc-go client
// (API listeners) or server (listeners with an address, grpc_tls.go):
// Resources, plus the checks grpc-go's xDS
// client makes when it unmarshals them (internal/xds/xdsclient/xdsresource
// in grpc-go 1.85), which NACK a response, plus a few things grpc-go
// silently drops (a route without a cluster, a hash policy it does not
// know, a locality of weight 0), which a control plane should not send
// either.
func GRPCResources(res map[string][]types.Resource) error {
	s := index(res)
	s.checkListeners()
	s.checkRouteConfigs()
	s.checkClusters()
	for _, l := range s.listeners {
		s.grpcListener(l)
	}
	for _, rc := range s.routes {
		s.grpcRouteConfig("route configuration "+strconv.Quote(rc.GetName()), rc)
	}
	for _, c := range s.clusters {
		s.grpcCluster(c)
	}
	for _, cla := range s.endpoints {
		s.grpcEndpoints(cla)
	}
	return errors.Join(s.errs...)
}

// grpcListener: a listener without api_listener is a server's (see
// grpcServerListener). A client listener is an api_listener holding an
// HttpConnectionManager with RDS over ADS (or self) or an inline route
// configuration, no xff_num_trusted_hops, no original IP detection, and
// HTTP filters grpc-go implements, the router last.
func (s *set) grpcListener(l *listenerv3.Listener) {
	where := "listener " + strconv.Quote(l.GetName())
	if l.GetApiListener() == nil {
		s.grpcServerListener(where, l)
		return
	}
	a := l.GetApiListener().GetApiListener()
	if a == nil {
		s.errorf("%s: api_listener is empty", where)
		return
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if !a.MessageIs(hcm) {
		s.errorf("%s: api_listener holds %q, not an HttpConnectionManager", where, a.GetTypeUrl())
		return
	}
	if err := a.UnmarshalTo(hcm); err != nil {
		return // reported by Resource
	}
	if hcm.GetXffNumTrustedHops() != 0 {
		s.errorf("%s: xff_num_trusted_hops must be zero", where)
	}
	if len(hcm.GetOriginalIpDetectionExtensions()) != 0 {
		s.errorf("%s: original_ip_detection_extensions must be empty", where)
	}
	switch {
	case hcm.GetRds() != nil:
		cs := hcm.GetRds().GetConfigSource()
		if cs.GetAds() == nil && cs.GetSelf() == nil {
			s.errorf("%s: RDS config source is neither ads nor self", where)
		}
		if hcm.GetRds().GetRouteConfigName() == "" {
			s.errorf("%s: empty route_config_name", where)
		}
	case hcm.GetRouteConfig() != nil:
		s.grpcRouteConfig(where+": route_config", hcm.GetRouteConfig())
	default:
		s.errorf("%s: no route specifier (rds or route_config)", where)
	}
	for _, f := range hcm.GetHttpFilters() {
		if !grpcKnowsHTTPFilter(f.GetTypedConfig()) && !f.GetIsOptional() {
			s.errorf("%s: HTTP filter %q of type %q is not implemented by grpc-go", where, f.GetName(), f.GetTypedConfig().GetTypeUrl())
		}
	}
}

func grpcKnowsHTTPFilter(a *anypb.Any) bool {
	return a.MessageIs(&routerv3.Router{}) || a.MessageIs(&faultv3.HTTPFault{}) || a.MessageIs(&rbacv3.RBAC{})
}

// grpcRouteConfig: every route has a path match (prefix, path or regex),
// header matchers grpc-go knows and no query parameter matcher (grpc-go
// skips the route); its action is a route naming an existing cluster or
// weighted clusters with a positive total weight (grpc-go has no
// cluster_not_found_response_code: it waits for a missing cluster), or a
// direct_response, which grpc-go accepts and answers with UNAVAILABLE (the
// deliberate failure of a rule without a usable backend); a retry policy
// grpc-go accepts; hash policies are on a header or the channel id.
func (s *set) grpcRouteConfig(where string, rc *routev3.RouteConfiguration) {
	for _, vh := range rc.GetVirtualHosts() {
		s.grpcRetryPolicy(where+": virtual host "+strconv.Quote(vh.GetName()), vh.GetRetryPolicy())
		for i, r := range vh.GetRoutes() {
			rWhere := where + ": virtual host " + strconv.Quote(vh.GetName()) + ": route " + strconv.Itoa(i)
			switch r.GetMatch().GetPathSpecifier().(type) {
			case *routev3.RouteMatch_Prefix, *routev3.RouteMatch_Path, *routev3.RouteMatch_SafeRegex:
			default:
				s.errorf("%s: grpc-go needs a prefix, path or safe_regex match", rWhere)
			}
			if len(r.GetMatch().GetQueryParameters()) > 0 {
				s.errorf("%s: query_parameters match (grpc-go ignores the route)", rWhere)
			}
			for _, h := range r.GetMatch().GetHeaders() {
				switch h.GetHeaderMatchSpecifier().(type) {
				case *routev3.HeaderMatcher_ExactMatch, *routev3.HeaderMatcher_SafeRegexMatch, *routev3.HeaderMatcher_RangeMatch,
					*routev3.HeaderMatcher_PresentMatch, *routev3.HeaderMatcher_PrefixMatch, *routev3.HeaderMatcher_SuffixMatch,
					*routev3.HeaderMatcher_ContainsMatch, *routev3.HeaderMatcher_StringMatch:
				default:
					s.errorf("%s: header %q: matcher not supported by grpc-go", rWhere, h.GetName())
				}
			}
			ra := r.GetRoute()
			if ra == nil {
				if r.GetNonForwardingAction() == nil && r.GetDirectResponse() == nil {
					s.errorf("%s: neither a route action nor a direct_response (grpc-go fails RPCs that match it)", rWhere)
				}
				continue
			}
			switch cs := ra.GetClusterSpecifier().(type) {
			case *routev3.RouteAction_Cluster:
				s.grpcClusterRef(rWhere, cs.Cluster)
			case *routev3.RouteAction_WeightedClusters:
				var total uint64
				for _, wc := range cs.WeightedClusters.GetClusters() {
					total += uint64(wc.GetWeight().GetValue())
					s.grpcClusterRef(rWhere, wc.GetName())
				}
				if total == 0 || total > math.MaxUint32 {
					s.errorf("%s: weighted clusters total weight %d must be in [1, 2^32)", rWhere, total)
				}
			default:
				s.errorf("%s: no cluster (grpc-go ignores the route)", rWhere)
			}
			s.grpcRetryPolicy(rWhere, ra.GetRetryPolicy())
			for _, hp := range ra.GetHashPolicy() {
				switch {
				case hp.GetHeader() != nil:
				case hp.GetFilterState() != nil && hp.GetFilterState().GetKey() == grpcChannelIDKey:
				default:
					s.errorf("%s: hash policy %v is ignored by grpc-go (only header and filter_state %q)", rWhere, hp, grpcChannelIDKey)
				}
			}
		}
	}
}

// grpcClusterRef: a cluster a gRPC route names must exist.
func (s *set) grpcClusterRef(where, name string) {
	if s.clusterNames != nil && !s.clusterNames[name] {
		s.errorf("%s: cluster %q does not exist (grpc-go would wait for it)", where, name)
	}
}

// grpcRetryPolicy: grpc-go NACKs num_retries < 1 and a backoff whose base
// or max interval is not positive.
func (s *set) grpcRetryPolicy(where string, rp *routev3.RetryPolicy) {
	if rp == nil {
		return
	}
	if n := rp.GetNumRetries(); n != nil && n.GetValue() < 1 {
		s.errorf("%s: retry_policy.num_retries %d must be >= 1", where, n.GetValue())
	}
	if b := rp.GetRetryBackOff(); b != nil {
		if b.GetBaseInterval().AsDuration() <= 0 {
			s.errorf("%s: retry_policy base_interval must be > 0", where)
		}
		if m := b.GetMaxInterval(); m != nil && m.AsDuration() <= 0 {
			s.errorf("%s: retry_policy max_interval must be > 0", where)
		}
	}
}

// grpcCluster: EDS (or LOGICAL_DNS, aggregate) with an ADS or self config
// source; ROUND_ROBIN, LEAST_REQUEST with choice_count >= 2 or RING_HASH
// with XX_HASH and ring sizes <= 8M; no transport_socket_matches; outlier
// detection percentages <= 100; an LRS server, if any, is self.
func (s *set) grpcCluster(c *clusterv3.Cluster) {
	where := "cluster " + strconv.Quote(c.GetName())
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
	case clusterv3.Cluster_LEAST_REQUEST:
		if cc := c.GetLeastRequestLbConfig().GetChoiceCount(); cc != nil && cc.GetValue() < 2 {
			s.errorf("%s: least_request choice_count %d < 2", where, cc.GetValue())
		}
	case clusterv3.Cluster_RING_HASH:
		rh := c.GetRingHashLbConfig()
		if rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			s.errorf("%s: ring hash function %s, grpc-go supports XX_HASH only", where, rh.GetHashFunction())
		}
		const ringMax = 8 * 1024 * 1024
		if rh.GetMaximumRingSize().GetValue() > ringMax || rh.GetMinimumRingSize().GetValue() > ringMax {
			s.errorf("%s: ring size over %d", where, ringMax)
		}
	default:
		s.errorf("%s: lb_policy %s is not supported by grpc-go", where, c.GetLbPolicy())
	}
	switch {
	case c.GetType() == clusterv3.Cluster_EDS:
		cs := c.GetEdsClusterConfig().GetEdsConfig()
		if cs.GetAds() == nil && cs.GetSelf() == nil {
			s.errorf("%s: EDS config source is neither ads nor self", where)
		}
	case c.GetType() == clusterv3.Cluster_LOGICAL_DNS:
	case c.GetClusterType().GetName() == "envoy.clusters.aggregate":
	default:
		s.errorf("%s: cluster type %s is not supported by grpc-go (EDS, LOGICAL_DNS or aggregate)", where, c.GetType())
	}
	if len(c.GetTransportSocketMatches()) != 0 {
		s.errorf("%s: transport_socket_matches is not supported by grpc-go", where)
	}
	if ts := c.GetTransportSocket(); ts != nil {
		s.grpcUpstreamTLS(where, ts)
	}
	if lrs := c.GetLrsServer(); lrs != nil && lrs.GetSelf() == nil {
		s.errorf("%s: lrs_server must be self", where)
	}
	if od := c.GetOutlierDetection(); od != nil {
		for _, f := range []struct {
			name  string
			value uint32
		}{
			{"max_ejection_percent", od.GetMaxEjectionPercent().GetValue()},
			{"enforcing_success_rate", od.GetEnforcingSuccessRate().GetValue()},
			{"failure_percentage_threshold", od.GetFailurePercentageThreshold().GetValue()},
			{"enforcing_failure_percentage", od.GetEnforcingFailurePercentage().GetValue()},
		} {
			if f.value > 100 {
				s.errorf("%s: outlier_detection.%s %d > 100", where, f.name, f.value)
			}
		}
	}
}

// grpcEndpoints: every locality has a locality and a positive weight (a
// zero-weight locality is dropped), no locality twice in a priority,
// priorities contiguous from 0, no address twice in the resource, endpoint
// weights positive and their sum per locality below 2^32.
func (s *set) grpcEndpoints(cla *endpointv3.ClusterLoadAssignment) {
	where := "endpoints " + strconv.Quote(cla.GetClusterName())
	addrs := map[string]bool{}
	localities := map[uint32]map[string]bool{}
	for i, l := range cla.GetEndpoints() {
		lWhere := where + ": locality " + strconv.Itoa(i)
		if l.GetLocality() == nil {
			s.errorf("%s: no locality", lWhere)
		}
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			s.errorf("%s: weight 0 (grpc-go drops the locality)", lWhere)
		}
		loc := l.GetLocality().GetRegion() + "/" + l.GetLocality().GetZone() + "/" + l.GetLocality().GetSubZone()
		if localities[l.GetPriority()] == nil {
			localities[l.GetPriority()] = map[string]bool{}
		}
		if localities[l.GetPriority()][loc] {
			s.errorf("%s: locality %s twice in priority %d", lWhere, loc, l.GetPriority())
		}
		localities[l.GetPriority()][loc] = true
		var sum uint64
		for _, e := range l.GetLbEndpoints() {
			w := uint64(1)
			if lw := e.GetLoadBalancingWeight(); lw != nil {
				w = uint64(lw.GetValue())
				if w == 0 {
					s.errorf("%s: endpoint with weight 0", lWhere)
				}
			}
			sum += w
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			addr := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			if addrs[addr] {
				s.errorf("%s: duplicate endpoint address %s", lWhere, addr)
			}
			addrs[addr] = true
		}
		if sum > math.MaxUint32 {
			s.errorf("%s: endpoint weights sum to %d, over 2^32-1", lWhere, sum)
		}
	}
	for p := 0; p < len(localities); p++ {
		if localities[uint32(p)] == nil {
			s.errorf("%s: priority %d missing (priorities must be contiguous from 0)", where, p)
		}
	}
}
