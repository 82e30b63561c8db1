package validate

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// The rules of grpc-go 1.85 for server listeners (xds.NewGRPCServer:
// internal/xds/xdsclient/xdsresource processServerSideListener,
// filterChainFromProto, buildFilterChainMap, processNetworkFilters) and for
// TLS transport sockets (securityConfigFromCluster,
// securityConfigFromCommonTLSContext), gRFCs A29 and A36.

// grpcServerListener: no listener filters, no use_original_dst, a socket
// address; every filter chain one grpc-go keeps (no match on destination
// port, server names, application protocols or a transport protocol other
// than raw_buffer: grpc-go drops such chains silently); an
// HttpConnectionManager as the only network filter, HTTP filters grpc-go
// runs server-side, RDS over ADS (not self) or an inline route
// configuration whose routes are all non_forwarding_action; TLS through a
// DownstreamTlsContext grpc-go accepts.
func (s *set) grpcServerListener(where string, l *listenerv3.Listener) {
	if n := len(l.GetListenerFilters()); n != 0 {
		s.errorf("%s: %d listener filters (grpc-go servers accept none)", where, n)
	}
	if l.GetUseOriginalDst().GetValue() {
		s.errorf("%s: use_original_dst is not supported by grpc-go servers", where)
	}
	if l.GetAddress().GetSocketAddress() == nil {
		s.errorf("%s: no socket address (grpc-go compares it with its listening address)", where)
	}
	kept := 0
	for i, fc := range l.GetFilterChains() {
		fcWhere := where + ": filter chain " + strconv.Itoa(i)
		m := fc.GetFilterChainMatch()
		switch {
		case m.GetDestinationPort() != nil && m.GetDestinationPort().GetValue() != 0:
			s.errorf("%s: destination_port match: grpc-go drops the chain", fcWhere)
		case len(m.GetServerNames()) != 0:
			s.errorf("%s: server_names match: grpc-go drops the chain", fcWhere)
		case m.GetTransportProtocol() != "" && m.GetTransportProtocol() != "raw_buffer":
			s.errorf("%s: transport_protocol %q: grpc-go drops the chain (it matches raw_buffer only)", fcWhere, m.GetTransportProtocol())
		case len(m.GetApplicationProtocols()) != 0:
			s.errorf("%s: application_protocols match: grpc-go drops the chain", fcWhere)
		default:
			kept++
		}
		s.grpcServerFilterChain(fcWhere, fc)
	}
	if d := l.GetDefaultFilterChain(); d != nil {
		kept++
		s.grpcServerFilterChain(where+": default filter chain", d)
	}
	if kept == 0 {
		s.errorf("%s: no filter chain grpc-go keeps", where)
	}
}

func (s *set) grpcServerFilterChain(where string, fc *listenerv3.FilterChain) {
	if len(fc.GetFilters()) == 0 {
		s.errorf("%s: no network filters", where)
	}
	for i, f := range fc.GetFilters() {
		fWhere := where + ": filter " + strconv.Itoa(i)
		a := f.GetTypedConfig()
		if a == nil {
			s.errorf("%s: no typed_config", fWhere)
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if !a.MessageIs(hcm) {
			s.errorf("%s: %q is not an HttpConnectionManager, the only network filter of grpc-go servers", fWhere, a.GetTypeUrl())
			continue
		}
		if err := a.UnmarshalTo(hcm); err != nil {
			continue // reported by Resource
		}
		s.grpcServerHCM(fWhere, hcm)
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		s.grpcDownstreamTLS(where, ts)
	}
}

func (s *set) grpcServerHCM(where string, hcm *hcmv3.HttpConnectionManager) {
	if hcm.GetXffNumTrustedHops() != 0 {
		s.errorf("%s: xff_num_trusted_hops must be zero", where)
	}
	if len(hcm.GetOriginalIpDetectionExtensions()) != 0 {
		s.errorf("%s: original_ip_detection_extensions must be empty", where)
	}
	for _, f := range hcm.GetHttpFilters() {
		a := f.GetTypedConfig()
		if !a.MessageIs(&routerv3.Router{}) && !a.MessageIs(&rbacv3.RBAC{}) && !f.GetIsOptional() {
			s.errorf("%s: HTTP filter %q of type %q is not run by grpc-go servers", where, f.GetName(), a.GetTypeUrl())
		}
	}
	switch {
	case hcm.GetRds() != nil:
		if hcm.GetRds().GetConfigSource().GetAds() == nil {
			s.errorf("%s: RDS config source is not ads (grpc-go servers accept nothing else)", where)
		}
		if hcm.GetRds().GetRouteConfigName() == "" {
			s.errorf("%s: empty route_config_name", where)
		}
	case hcm.GetRouteConfig() != nil:
		rcWhere := where + ": route_config"
		s.grpcRouteConfig(rcWhere, hcm.GetRouteConfig())
		for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
			for i, r := range vh.GetRoutes() {
				if r.GetNonForwardingAction() == nil {
					s.errorf("%s: virtual host %q: route %d: not a non_forwarding_action (a grpc-go server fails the RPCs it matches)", rcWhere, vh.GetName(), i)
				}
			}
		}
	default:
		s.errorf("%s: no route specifier (rds or route_config)", where)
	}
}

// grpcUpstreamTLS: a cluster's TLS transport socket as grpc-go reads it.
// Besides what grpc-go NACKs, match_typed_subject_alt_names is an error:
// grpc-go ignores it, so the peer's identity would go unchecked.
func (s *set) grpcUpstreamTLS(where string, ts *corev3.TransportSocket) {
	where += ": transport_socket"
	if !s.tlsSocketName(where, ts) {
		return
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if !ts.GetTypedConfig().MessageIs(ctx) {
		s.errorf("%s: holds %q, not an UpstreamTlsContext", where, ts.GetTypedConfig().GetTypeUrl())
		return
	}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return // reported by Resource
	}
	s.grpcCommonTLS(where, ctx.GetCommonTlsContext(), false)
}

// grpcDownstreamTLS: a server filter chain's TLS transport socket.
func (s *set) grpcDownstreamTLS(where string, ts *corev3.TransportSocket) {
	where += ": transport_socket"
	if !s.tlsSocketName(where, ts) {
		return
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if !ts.GetTypedConfig().MessageIs(ctx) {
		s.errorf("%s: holds %q, not a DownstreamTlsContext", where, ts.GetTypedConfig().GetTypeUrl())
		return
	}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return
	}
	if ctx.GetRequireSni().GetValue() {
		s.errorf("%s: require_sni is not supported by grpc-go", where)
	}
	if ctx.GetOcspStaplePolicy() != tlsv3.DownstreamTlsContext_LENIENT_STAPLING {
		s.errorf("%s: ocsp_staple_policy %s is not supported by grpc-go", where, ctx.GetOcspStaplePolicy())
	}
	s.grpcCommonTLS(where, ctx.GetCommonTlsContext(), true)
	if ctx.GetRequireClientCertificate().GetValue() &&
		ctx.GetCommonTlsContext().GetValidationContext().GetCaCertificateProviderInstance() == nil &&
		ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetCaCertificateProviderInstance() == nil {
		s.errorf("%s: require_client_certificate without a ca_certificate_provider_instance", where)
	}
}

func (s *set) tlsSocketName(where string, ts *corev3.TransportSocket) bool {
	if ts.GetName() != wellknown.TransportSocketTLS {
		s.errorf("%s: name %q, grpc-go wants %q", where, ts.GetName(), wellknown.TransportSocketTLS)
		return false
	}
	if ts.GetTypedConfig() == nil {
		s.errorf("%s: no typed_config", where)
		return false
	}
	return true
}

// grpcCommonTLS: certificates only from certificate provider instances,
// no tls_params or custom handshaker, a validation context with a
// ca_certificate_provider_instance (required on clients) and without the
// validations grpc-go does not do; SAN matchers only on clients, and only
// the untyped ones.
func (s *set) grpcCommonTLS(where string, c *tlsv3.CommonTlsContext, server bool) {
	if c == nil {
		s.errorf("%s: no common_tls_context", where)
		return
	}
	if c.GetTlsParams() != nil {
		s.errorf("%s: tls_params is not supported by grpc-go", where)
	}
	if c.GetCustomHandshaker() != nil {
		s.errorf("%s: custom_handshaker is not supported by grpc-go", where)
	}
	if c.GetTlsCertificateProviderInstance() == nil {
		if len(c.GetTlsCertificates()) != 0 || len(c.GetTlsCertificateSdsSecretConfigs()) != 0 {
			s.errorf("%s: certificates given inline or by SDS; grpc-go needs tls_certificate_provider_instance", where)
		}
		if server {
			s.errorf("%s: a server needs tls_certificate_provider_instance", where)
		}
	}
	var vc *tlsv3.CertificateValidationContext
	switch c.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = c.GetValidationContext()
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		vc = c.GetCombinedValidationContext().GetDefaultValidationContext()
	case nil:
		if !server {
			s.errorf("%s: no validation context (a client needs the roots)", where)
		}
		return
	default:
		s.errorf("%s: validation context by SDS: grpc-go needs ca_certificate_provider_instance", where)
		return
	}
	if vc.GetCaCertificateProviderInstance() == nil {
		s.errorf("%s: validation context without ca_certificate_provider_instance", where)
	}
	switch {
	case len(vc.GetVerifyCertificateSpki()) != 0, len(vc.GetVerifyCertificateHash()) != 0,
		vc.GetRequireSignedCertificateTimestamp().GetValue(), vc.GetCrl() != nil, vc.GetCustomValidatorConfig() != nil:
		s.errorf("%s: validation context uses SPKI/hash pinning, SCTs, a CRL or a custom validator, which grpc-go does not support", where)
	}
	if len(vc.GetMatchTypedSubjectAltNames()) != 0 {
		s.errorf("%s: match_typed_subject_alt_names is ignored by grpc-go (use match_subject_alt_names): the peer's identity would go unchecked", where)
	}
	//lint:ignore SA1019 grpc-go reads only the deprecated field, so the validator checks it
	if server && len(vc.GetMatchSubjectAltNames()) != 0 {
		s.errorf("%s: match_subject_alt_names is not supported on grpc-go servers", where)
	}
}
