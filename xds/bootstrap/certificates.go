package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CertificateProviderInstance is the name of the certificate provider in
// the gRPC bootstrap; the xDS resources Sluice sends proxyless gRPC refer to
// it (CertificateProviderPluginInstance.instance_name) for both the
// workload's certificate and the trust bundle.
const CertificateProviderInstance = "sluice"

// DefaultCertificateRefresh is how often gRPC re-reads the certificate
// files. Leaves are renewed at half their life, so this only needs to be
// well below that.
const DefaultCertificateRefresh = 10 * time.Second

// CertificateFiles are the PEM files the certificate agent writes for
// proxyless gRPC.
type CertificateFiles struct {
	CertificateFile   string
	PrivateKeyFile    string
	CACertificateFile string
	// RefreshInterval defaults to DefaultCertificateRefresh.
	RefreshInterval time.Duration
}

// grpcCertificateProvider is one entry of certificate_providers.
type grpcCertificateProvider struct {
	PluginName string            `json:"plugin_name"`
	Config     fileWatcherConfig `json:"config"`
}

type fileWatcherConfig struct {
	CertificateFile   string `json:"certificate_file"`
	PrivateKeyFile    string `json:"private_key_file"`
	CACertificateFile string `json:"ca_certificate_file"`
	RefreshInterval   string `json:"refresh_interval"`
}

// WithCertificateProviders returns the gRPC bootstrap JSON (as GRPC
// returns it) with a certificate_providers section: one file_watcher
// provider named CertificateProviderInstance reading files, and
// node.metadata.MTLS "true", which tells Sluice the client can do mutual
// TLS (grpc-go NACKs security settings naming a provider its bootstrap
// lacks, so Sluice sends them only then). Other fields are kept.
func WithCertificateProviders(bootstrapJSON []byte, files CertificateFiles) ([]byte, error) {
	if files.CertificateFile == "" || files.PrivateKeyFile == "" || files.CACertificateFile == "" {
		return nil, errors.New("gRPC bootstrap: the certificate, key and CA certificate files are all required")
	}
	refresh := files.RefreshInterval
	if refresh <= 0 {
		refresh = DefaultCertificateRefresh
	}
	var b map[string]json.RawMessage
	if err := json.Unmarshal(bootstrapJSON, &b); err != nil {
		return nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	providers, err := json.Marshal(map[string]grpcCertificateProvider{
		CertificateProviderInstance: {
			PluginName: "file_watcher",
			Config: fileWatcherConfig{
				CertificateFile:   files.CertificateFile,
				PrivateKeyFile:    files.PrivateKeyFile,
				CACertificateFile: files.CACertificateFile,
				// A google.protobuf.Duration in JSON: seconds with an "s".
				RefreshInterval: fmt.Sprintf("%gs", refresh.Seconds()),
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	b["certificate_providers"] = providers
	if b["node"], err = withNodeMetadata(b["node"], MetaMTLS, "true"); err != nil {
		return nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("gRPC bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// withNodeMetadata sets node.metadata[key] in a bootstrap's node object,
// keeping its other fields.
func withNodeMetadata(node json.RawMessage, key, value string) (json.RawMessage, error) {
	n := map[string]json.RawMessage{}
	if len(node) > 0 {
		if err := json.Unmarshal(node, &n); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	md := map[string]any{}
	if raw, ok := n["metadata"]; ok {
		if err := json.Unmarshal(raw, &md); err != nil {
			return nil, fmt.Errorf("node metadata: %w", err)
		}
	}
	md[key] = value
	raw, err := json.Marshal(md)
	if err != nil {
		return nil, err
	}
	n["metadata"] = raw
	return json.Marshal(n)
}
