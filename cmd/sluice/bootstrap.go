package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sluice-mesh/sluice/certs/wellknown"
	"github.com/sluice-mesh/sluice/xds/bootstrap"
)

const bootstrapHelp = `Print the bootstrap a workload needs to get its configuration from Sluice.

  --kind grpc   JSON for proxyless gRPC: save it and point GRPC_XDS_BOOTSTRAP at
                it (or put it in GRPC_XDS_BOOTSTRAP_CONFIG), then dial xds:///<svc>.<ns>:<port>.
  --kind envoy  YAML for an Envoy sidecar: envoy -c bootstrap.yaml.

The node metadata it writes (namespace, pod, service account, IP, zone) lets
Sluice send the workload only what it may use and prefer endpoints in its zone.
In a pod, take these from the downward API (metadata.name, metadata.namespace,
spec.serviceAccountName, status.podIP).

Example:
  sluice bootstrap --kind grpc --name "$POD_NAME" --namespace "$POD_NAMESPACE" \
    --xds-address sluice.sluice-system.svc:15010 > /etc/grpc/bootstrap.json`

// bootstrapConfig is what `sluice bootstrap` is asked to print.
type bootstrapConfig struct {
	kind     string
	output   string
	workload bootstrap.Workload
}

func runBootstrap(_ context.Context, args []string, stdout, _ io.Writer) error {
	var cfg bootstrapConfig
	fs := newFlagSet("bootstrap", bootstrapHelp, stdout)
	fs.StringVar(&cfg.kind, "kind", "grpc", `what the bootstrap is for: "grpc" (proxyless gRPC, JSON) or "envoy" (Envoy sidecar, YAML)`)
	fs.StringVarP(&cfg.output, "output", "o", "-", `file to write, "-" for standard output`)
	fs.StringVar(&cfg.workload.Pod, "name", "", "the workload's pod name (required unless --node-id is given)")
	fs.StringVar(&cfg.workload.Namespace, "namespace", "", "the workload's namespace")
	fs.StringVar(&cfg.workload.ServiceAccount, "service-account", "", "the workload's service account")
	fs.StringVar(&cfg.workload.IP, "ip", "", "the workload's pod IP (Envoy's inbound listener)")
	fs.StringVar(&cfg.workload.Zone, "zone", "", "the workload's zone, for locality-aware load balancing")
	fs.StringVar(&cfg.workload.NodeID, "node-id", "", `xDS node id (default "<name>.<namespace>")`)
	fs.StringVar(&cfg.workload.SDSSocket, "sds-socket", "", "with --kind envoy: the Unix socket where `sluice agent` serves the workload's certificates over SDS (e.g. "+wellknown.DefaultSDSSocket+"); with it the sidecar does mutual TLS, without it plaintext only")
	fs.StringVar(&cfg.workload.XDSAddress, "xds-address", "", "the Sluice xDS address as host:port, e.g. sluice.sluice-system.svc:15010 (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var out []byte
	var err error
	switch cfg.kind {
	case "grpc":
		out, err = bootstrap.GRPC(cfg.workload)
	case "envoy":
		out, err = bootstrap.EnvoyYAML(cfg.workload)
	default:
		return fmt.Errorf(`%w: --kind must be "grpc" or "envoy", not %q`, errUsage, cfg.kind)
	}
	if cfg.kind == "grpc" && cfg.workload.SDSSocket != "" {
		return fmt.Errorf("%w: --sds-socket is for Envoy; proxyless gRPC gets its certificates from the bootstrap `sluice agent` writes", errUsage)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.output == "-" {
		_, err = stdout.Write(out)
		return err
	}
	if err := os.WriteFile(cfg.output, out, 0o644); err != nil {
		return fmt.Errorf("writing bootstrap: %w", err)
	}
	return nil
}
