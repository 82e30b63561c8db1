package server

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/sluice-mesh/sluice/mesh"
)

// Node metadata keys (the same as xds/bootstrap writes). Every key is
// optional.
const (
	MetaProxyKind      = "PROXY_KIND"
	MetaNamespace      = "NAMESPACE"
	MetaPodName        = "POD_NAME"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaInstanceIP     = "INSTANCE_IP"
	MetaMTLS           = "MTLS"
)

// ParseProxy reads who is asking from the xDS node of a stream's first
// request:
//
//	node.id                        any string; "<pod>.<namespace>" by convention
//	node.locality.zone             Proxy.Zone
//	node.metadata.PROXY_KIND       "envoy" or "grpc"
//	node.metadata.NAMESPACE        Proxy.Namespace
//	node.metadata.POD_NAME         Proxy.Pod
//	node.metadata.SERVICE_ACCOUNT  Proxy.ServiceAccount
//	node.metadata.INSTANCE_IP      Proxy.IP (the first, if a comma-separated list)
//	node.metadata.MTLS             Proxy.MTLS when "true" (the proxy has certificates)
//
// Without PROXY_KIND the kind comes from node.user_agent_name: "envoy" is
// Envoy; a name containing "grpc" ("gRPC Go", "gRPC Java", "grpc-go"...) is
// proxyless gRPC. A client that says nothing is treated as proxyless gRPC:
// it asks for resources by name and gets every service it asks for.
func ParseProxy(node *corev3.Node) mesh.Proxy {
	p := mesh.Proxy{ID: node.GetId(), Zone: node.GetLocality().GetZone()}
	md := node.GetMetadata().GetFields()
	str := func(key string) string { return strings.TrimSpace(md[key].GetStringValue()) }
	p.Namespace = str(MetaNamespace)
	p.Pod = str(MetaPodName)
	p.ServiceAccount = str(MetaServiceAccount)
	p.MTLS = strings.EqualFold(str(MetaMTLS), "true")
	if ip := str(MetaInstanceIP); ip != "" {
		p.IP = strings.TrimSpace(strings.Split(ip, ",")[0])
	}
	switch kind := strings.ToLower(str(MetaProxyKind)); {
	case kind == string(mesh.ProxyEnvoy):
		p.Kind = mesh.ProxyEnvoy
	case kind == string(mesh.ProxyGRPC):
		p.Kind = mesh.ProxyGRPC
	default:
		ua := strings.ToLower(node.GetUserAgentName())
		if ua == "envoy" {
			p.Kind = mesh.ProxyEnvoy
		} else {
			p.Kind = mesh.ProxyGRPC
		}
	}
	return p
}

// classKey holds the proxy attributes translation depends on: kind,
// namespace (short service names), zone (locality priorities) and, for
// Envoy, the IP (the inbound listener). Proxies with equal keys get the
// same resources, translated and marshaled once. The service account is
// left out while translation does not use it (TestTranslationIgnoresOutOfClassAttributes
// fails if it starts to): with one account per workload it would make as
// many classes as workloads.
type classKey struct {
	kind      mesh.ProxyKind
	namespace string
	zone      string
	// ip is kept for Envoy only (its inbound listener binds it); proxyless
	// gRPC clients are addressed by listener name, not by IP.
	ip string
	// mtls: the proxy has certificates (translation sends TLS settings
	// only then).
	mtls bool
}

// classOf returns the class of p and the proxy translation is given: p with
// every attribute outside the class blanked (pod name) and the ID replaced by
// a description of the class. Translation therefore cannot depend on anything
// the memo key does not hold.
func classOf(p mesh.Proxy) (classKey, mesh.Proxy) {
	k := classKey{kind: p.Kind, namespace: p.Namespace, zone: p.Zone, mtls: p.MTLS}
	if p.Kind == mesh.ProxyEnvoy {
		k.ip = p.IP
	}
	return k, mesh.Proxy{
		ID:        k.String(),
		Kind:      k.kind,
		Namespace: k.namespace,
		IP:        k.ip,
		Zone:      k.zone,
		MTLS:      k.mtls,
	}
}

// String describes the class, e.g. "grpc ns=default zone=a".
func (k classKey) String() string {
	var b strings.Builder
	b.WriteString(string(k.kind))
	for _, kv := range [][2]string{{"ns", k.namespace}, {"zone", k.zone}, {"ip", k.ip}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + "=" + kv[1])
		}
	}
	if k.mtls {
		b.WriteString(" mtls")
	}
	return b.String()
}
