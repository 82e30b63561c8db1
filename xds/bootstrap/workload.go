package bootstrap

import (
	"errors"
	"fmt"
	"net"
)

// Workload says who the bootstrap is for and where the control plane is.
type Workload struct {
	// NodeID overrides the default "<pod>.<namespace>".
	NodeID         string
	Pod            string
	Namespace      string
	ServiceAccount string
	IP             string
	Zone           string
	// XDSAddress is the control plane's host:port.
	XDSAddress string
	// SDSSocket is the certificate agent's SDS Unix socket
	// (wellknown.DefaultSDSSocket in a standard pod). An Envoy bootstrap
	// with it reaches the agent through the static cluster SDSClusterName
	// and says MTLS in its node metadata; without it the sidecar has no
	// certificates and Sluice sends it plaintext configuration only. Not
	// used by gRPC (see WithCertificateProviders).
	SDSSocket string
}

func (w Workload) validate() error {
	var errs []error
	if w.XDSAddress == "" {
		errs = append(errs, errors.New("the control plane address is required (--xds-address host:port)"))
	} else if _, _, err := net.SplitHostPort(w.XDSAddress); err != nil {
		errs = append(errs, fmt.Errorf("control plane address %q is not host:port: %w", w.XDSAddress, err))
	}
	if w.NodeID == "" && w.Pod == "" {
		errs = append(errs, errors.New("a pod name (--name) or a node id (--node-id) is required"))
	}
	if w.IP != "" && net.ParseIP(w.IP) == nil {
		errs = append(errs, fmt.Errorf("workload IP %q is not an IP address", w.IP))
	}
	return errors.Join(errs...)
}

func (w Workload) nodeID() string {
	if w.NodeID != "" {
		return w.NodeID
	}
	if w.Namespace == "" {
		return w.Pod
	}
	return w.Pod + "." + w.Namespace
}

func (w Workload) metadata(kind string) map[string]string {
	md := map[string]string{MetaProxyKind: kind}
	for k, v := range map[string]string{
		MetaNamespace:      w.Namespace,
		MetaPodName:        w.Pod,
		MetaServiceAccount: w.ServiceAccount,
		MetaInstanceIP:     w.IP,
	} {
		if v != "" {
			md[k] = v
		}
	}
	return md
}
