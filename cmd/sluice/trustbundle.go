package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-mesh/sluice/certs/trustbundle"
	"github.com/sluice-mesh/sluice/discovery"
)

// newTrustBundlePublisher returns the component that publishes the CA's
// trust bundle to workloads, or nil when there is none to run: no CA, no
// cluster (--config-dir), or --ca-trust-configmap="".
//
// Consumes: the CA in use (the rotation's source: both roots during a root
// rotation, then the new one), Namespaces, the ConfigMaps it owns,
// leadership. Produces: ConfigMap <--ca-trust-configmap> with key root.crt
// in every namespace that is not terminating, written by the leader only
// and only when it differs.
func newTrustBundlePublisher(c caConfig, certs *certificateAuthority, client kubernetes.Interface, leader discovery.Leader, reg prometheus.Registerer, log *slog.Logger) (runner, error) {
	if certs == nil || client == nil || c.trustConfigMap == "" {
		return nil, nil
	}
	p, err := trustbundle.New(trustbundle.Config{
		Client:     client,
		Source:     certs.rotation.Source(),
		Leader:     leader,
		Name:       c.trustConfigMap,
		Registerer: reg,
		Log:        log.With("component", "trust-bundle"),
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// validateTrustConfigMap checks --ca-trust-configmap: empty (off) or a
// ConfigMap name.
func validateTrustConfigMap(name string) error {
	if name == "" {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("--ca-trust-configmap %q is not a ConfigMap name: %s", name, strings.Join(errs, "; "))
	}
	return nil
}
