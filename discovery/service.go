package discovery

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-mesh/sluice/mesh"
)

// buildService maps a Service (and its Namespace, for annotation defaults;
// nil when unknown) to the mesh model. It returns a nil service when the
// Service is not part of the mesh: ExternalName services, services without
// TCP ports (UDP and SCTP ports are not proxied and are skipped silently),
// and services without any valid port (a NoPorts problem).
func buildService(svc *corev1.Service, ns *corev1.Namespace) (*mesh.Service, []Problem) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	var problems []Problem
	report := func(reason, format string, args ...any) {
		problems = append(problems, Problem{
			Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: string(svc.UID),
			Reason: reason, Message: fmt.Sprintf(format, args...),
		})
	}
	if len(svc.Spec.Ports) == 0 {
		report(ReasonNoPorts, "the service has no ports; not served")
		return nil, problems
	}

	ports, tcpPorts := buildPorts(svc, report)
	if len(ports) == 0 {
		if tcpPorts > 0 {
			report(ReasonNoPorts, "the service has no valid TCP port; not served")
		}
		return nil, problems
	}

	out := &mesh.Service{
		Namespace:  svc.Namespace,
		Name:       svc.Name,
		ClusterIPs: clusterIPs(svc, report),
		Ports:      ports,
	}
	var nsAnnotations map[string]string
	if ns != nil {
		nsAnnotations = ns.Annotations
	}
	lb, errs := parseLoadBalancing(svc.Annotations, nsAnnotations)
	out.LB = lb
	tlsMode, tlsErrs := parseTLSMode(svc.Annotations, nsAnnotations)
	out.TLSMode = tlsMode
	errs = append(errs, tlsErrs...)
	for _, e := range errs {
		if !e.fromNamespace {
			report(ReasonInvalidAnnotation, "%s", e.message)
			continue
		}
		p := Problem{Kind: "Namespace", Name: svc.Namespace, Reason: ReasonInvalidAnnotation, Message: e.message}
		if ns != nil {
			p.UID = string(ns.UID)
		}
		problems = append(problems, p)
	}
	for _, p := range problems {
		w := p.Message
		if p.Kind == "Namespace" {
			w = "namespace annotation: " + w
		}
		out.Warnings = append(out.Warnings, w)
	}
	return out, problems
}

// buildPorts returns the valid TCP ports of a service sorted by number, and
// how many TCP ports it declares (valid or not).
func buildPorts(svc *corev1.Service, report func(reason, format string, args ...any)) (ports []mesh.Port, tcpPorts int) {
	seenNumber := map[int32]bool{}
	seenName := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		tcpPorts++
		switch {
		case p.Port < 1 || p.Port > 65535:
			report(ReasonInvalidPort, "port %q has number %d, outside 1-65535; skipped", p.Name, p.Port)
			continue
		case seenNumber[p.Port]:
			report(ReasonDuplicatePort, "port %d is declared twice; the second (%q) is skipped", p.Port, p.Name)
			continue
		case seenName[p.Name]:
			report(ReasonDuplicatePort, "port name %q is used twice; port %d is skipped", p.Name, p.Port)
			continue
		}
		seenNumber[p.Port], seenName[p.Name] = true, true
		ports = append(ports, mesh.Port{
			Name:     p.Name,
			Port:     uint32(p.Port),
			Protocol: detectProtocol(p.AppProtocol, p.Name),
		})
	}
	slices.SortFunc(ports, func(a, b mesh.Port) int { return cmp.Compare(a.Port, b.Port) })
	return ports, tcpPorts
}

// clusterIPs returns the service's virtual IPs, none for a headless service.
func clusterIPs(svc *corev1.Service, report func(reason, format string, args ...any)) []string {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			report(ReasonInvalidClusterIP, "cluster IP %q is not an IP address; skipped", ip)
			continue
		}
		out = append(out, addr.String())
	}
	return out
}
