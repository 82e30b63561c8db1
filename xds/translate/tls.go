package translate

import (
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/certs/identity"
	certnames "github.com/sluice-mesh/sluice/certs/wellknown"
	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

// Mutual TLS builders. Everything here is off (no transport sockets at
// all) unless Options.TrustDomain is set.
//
// Certificates never pass through Sluice: the certificate agent beside each
// workload holds its key and certificate and hands them to the local proxy.
// Envoy fetches them over SDS from the agent's Unix socket (the static
// cluster bootstrap.SDSClusterName), as the secrets "default" (certificate
// and key) and "ROOTCA" (the mesh's roots). grpc-go reads them through the
// file_watcher certificate provider instance "sluice" of its bootstrap; the
// certificate names "default" and "ROOTCA" are passed to it and ignored by
// file_watcher.
//
// Client side: a cluster of a STRICT or PERMISSIVE service carries an
// UpstreamTlsContext that presents the workload's certificate and accepts
// the destination's only if it chains to the mesh's roots and has the
// SPIFFE ID of one of the service accounts behind the service port's
// endpoints (URI SAN, exact). DISABLE services are called in plaintext.
//
// A proxy without certificates (mesh.Proxy.MTLS false: no agent, a
// bootstrap without Sluice's certificate provider) gets no TLS settings at
// all: grpc-go NACKs a cluster or listener naming a certificate provider
// its bootstrap lacks, and Envoy would wait for secrets nobody serves. It
// calls everything in plaintext (STRICT services refuse it: a warning),
// and its own STRICT ports fail closed: an Envoy sidecar's inbound chain
// goes to BlackHoleCluster, a gRPC server gets no listener (it does not
// serve); its PERMISSIVE ports accept plaintext.

// originatesTLS says whether this proxy calls svc with mutual TLS.
func (t *translator) originatesTLS(svc *mesh.Service) bool {
	mode := t.tlsModeOf(svc)
	if mode == mesh.TLSStrict && !t.proxy.MTLS {
		t.strictWithoutCertificates = append(t.strictWithoutCertificates, svc.Key().String())
	}
	return t.proxy.MTLS && mode.OriginatesTLS()
}

// warnStrictWithoutCertificates reports, once, that a proxy without
// certificates calls STRICT services.
func (t *translator) warnStrictWithoutCertificates() {
	if len(t.strictWithoutCertificates) == 0 {
		return
	}
	sort.Strings(t.strictWithoutCertificates)
	names := t.strictWithoutCertificates[:1]
	for _, n := range t.strictWithoutCertificates[1:] {
		if n != names[len(names)-1] {
			names = append(names, n)
		}
	}
	t.warnf("proxy %q has no certificates (its node metadata does not say MTLS): it calls every service in plaintext, and STRICT services refuse it: %v", t.proxy.ID, names)
}

// tlsModeOf returns the TLS mode translation applies to svc: DISABLE when
// mutual TLS is off, the default for an empty or unknown mode.
func (t *translator) tlsModeOf(svc *mesh.Service) mesh.TLSMode {
	if t.trustDomain == "" {
		return mesh.TLSDisable
	}
	if !svc.TLSMode.Valid() {
		t.warnf("%s: unknown TLS mode %q: %s used", svc.Key(), svc.TLSMode, mesh.DefaultTLSMode)
		return mesh.DefaultTLSMode
	}
	return svc.TLSMode.OrDefault()
}

// peerIDs returns the SPIFFE IDs of the service accounts behind the
// endpoints of a service port (whatever their health: a draining endpoint
// still serves), sorted, each once. An endpoint whose service account is
// unknown (an EndpointSlice entry without a pod) adds nothing: a client
// reaches it only if it presents one of the others' identities, or any
// identity of the mesh when no endpoint's account is known.
func (t *translator) peerIDs(sp servicePort) []string {
	seen := map[string]bool{}
	unknown := 0
	for _, ep := range t.snap.Endpoints[sp.key] {
		if ep.ServiceAccount == "" {
			unknown++
			continue
		}
		seen[identity.ID{TrustDomain: t.trustDomain, Namespace: sp.key.Namespace, ServiceAccount: ep.ServiceAccount}.String()] = true
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	switch {
	case unknown > 0 && len(ids) == 0:
		t.warnf("%s port %d: no endpoint has a known service account: the peer's certificate is checked against the mesh's roots only, not its identity", sp.svc.Key(), sp.key.Port)
	case unknown > 0:
		t.warnf("%s port %d: %d endpoint(s) without a known service account are reached only if they present one of %v", sp.svc.Key(), sp.key.Port, unknown, ids)
	}
	return ids
}

// transportSocket wraps a TLS context as the TLS transport socket (the
// name grpc-go requires).
func (t *translator) transportSocket(tlsContext proto.Message) *corev3.TransportSocket {
	a := t.any(tlsContext)
	if a == nil {
		return nil
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}
}

// sdsSecret refers to a secret the certificate agent serves over SDS on
// its Unix socket, reached through the bootstrap's static cluster.
func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{
		Name: name,
		SdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: bootstrap.SDSClusterName},
					},
				}},
			}},
		},
	}
}

// upstreamALPN is what an Envoy client offers in the TLS handshake: the
// HTTP version it speaks on the cluster, so a grpc-go server (which wants
// h2) or an Envoy server (which picks its codec by it) agrees.
func upstreamALPN(p mesh.Protocol) []string {
	switch p {
	case mesh.ProtocolHTTP2, mesh.ProtocolGRPC:
		return []string{"h2"}
	case mesh.ProtocolHTTP:
		return []string{"http/1.1"}
	}
	return nil
}

// envoyUpstreamTLS is the transport socket of an Envoy cluster: mutual TLS
// with the SDS secrets and URI SAN matching on the destination's identities,
// or nil for plaintext.
func (t *translator) envoyUpstreamTLS(sp servicePort) *corev3.TransportSocket {
	if !t.originatesTLS(sp.svc) {
		return nil
	}
	var sans []*tlsv3.SubjectAltNameMatcher
	for _, id := range t.peerIDs(sp) {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: exactMatcher(id),
		})
	}
	return t.transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(certnames.SDSCertificate)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: sdsSecret(certnames.SDSTrustBundle),
			},
		},
		AlpnProtocols: upstreamALPN(sp.port.Protocol),
	}})
}

// envoyDownstreamTLS is the transport socket of an Envoy inbound filter
// chain that terminates mutual TLS: the workload's certificate, client
// certificates required and checked against the mesh's roots (any mesh
// identity may connect; authorization is not this layer's job). HTTP chains
// offer h2 and http/1.1 by ALPN: grpc-go clients require h2 to be
// negotiated.
func (t *translator) envoyDownstreamTLS(http bool) *corev3.TransportSocket {
	common := &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(certnames.SDSCertificate)},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: sdsSecret(certnames.SDSTrustBundle),
		},
	}
	if http {
		common.AlpnProtocols = []string{"h2", "http/1.1"}
	}
	return t.transportSocket(&tlsv3.DownstreamTlsContext{
		CommonTlsContext:         common,
		RequireClientCertificate: wrapperspb.Bool(true),
	})
}

// grpcProvider names a certificate of the gRPC bootstrap's certificate
// provider instance.
func grpcProvider(certificateName string) *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{
		InstanceName:    bootstrap.CertificateProviderInstance,
		CertificateName: certificateName,
	}
}

// grpcUpstreamTLS is the transport socket of a proxyless gRPC cluster, or
// nil for plaintext. grpc-go (A29, securityConfigFromCluster) accepts only
// certificate provider instances, NACKs tls_params, custom handshakers,
// SDS and inline certificates, and matches SANs with match_subject_alt_names
// only (it ignores the typed matchers Envoy prefers), so the SPIFFE IDs go
// there, as exact matchers it compares with the certificate's URI SANs.
func (t *translator) grpcUpstreamTLS(sp servicePort) *corev3.TransportSocket {
	if !t.originatesTLS(sp.svc) {
		return nil
	}
	var sans []*matcherv3.StringMatcher
	for _, id := range t.peerIDs(sp) {
		sans = append(sans, exactMatcher(id))
	}
	return t.transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: grpcProvider(certnames.SDSCertificate),
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: grpcProvider(certnames.SDSTrustBundle),
			//lint:ignore SA1019 grpc-go honours only the deprecated match_subject_alt_names, not the typed matchers
			MatchSubjectAltNames: sans,
		}},
	}})
}

// grpcDownstreamTLS is the transport socket of a proxyless gRPC server's
// filter chain: its certificate, and client certificates required and
// checked against the mesh's roots. grpc-go NACKs SAN matchers on the
// server side, require_sni and a strict OCSP stapling policy.
func (t *translator) grpcDownstreamTLS() *corev3.TransportSocket {
	return t.transportSocket(&tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: grpcProvider(certnames.SDSCertificate),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: grpcProvider(certnames.SDSTrustBundle),
			}},
		},
		RequireClientCertificate: wrapperspb.Bool(true),
	})
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// mergeTLSModes is the mode of a workload port that several services
// target: their common mode, or PERMISSIVE when they differ, which accepts
// what every service's clients send (mutual TLS for STRICT and PERMISSIVE
// services, plaintext for DISABLE ones). The second result says they
// differed.
func mergeTLSModes(a, b mesh.TLSMode) (mesh.TLSMode, bool) {
	if a == b {
		return a, false
	}
	return mesh.TLSPermissive, true
}
