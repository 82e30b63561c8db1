package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/durationpb"

	certsv1 "github.com/sluice-mesh/sluice/certs/api/v1"
)

// ClientConfig says how to reach the certificate service.
type ClientConfig struct {
	// Address is host:port of the service.
	Address string
	// ServerName is the name its certificate must have; the host of Address
	// when empty.
	ServerName string
	// TrustPEM is the roots that may sign the service's certificate, from a
	// file the operator distributes (the CA's root.crt). Trust bundles the
	// service returns later are trusted too, so a root rotation needs no new
	// file.
	TrustPEM []byte
	// TokenFile is the projected ServiceAccount token, read at every request
	// (the kubelet rotates it).
	TokenFile string
	// WatchMinBackoff and WatchMaxBackoff bound the wait before reopening a
	// failed trust bundle watch (1s, 1m).
	WatchMinBackoff time.Duration
	WatchMaxBackoff time.Duration
	Log             *slog.Logger
}

// Client is the certificate service's client. It implements Issuer.
type Client struct {
	conn      *grpc.ClientConn
	api       certsv1.CertificateServiceClient
	tokenFile string
	log       *slog.Logger
	// watchMin and watchMax bound the watch's reconnection backoff.
	watchMin, watchMax time.Duration

	mu     sync.Mutex
	static *x509.CertPool
	roots  *x509.CertPool
}

// NewClient returns a client of the service at cfg.Address. It connects
// lazily.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.TokenFile == "" {
		return nil, errors.New("certificate client: no token file")
	}
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("certificate service address %q: %w", cfg.Address, err)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	static := x509.NewCertPool()
	if !static.AppendCertsFromPEM(cfg.TrustPEM) {
		return nil, errors.New("certificate client: no root certificate to verify the service with")
	}
	if cfg.WatchMinBackoff <= 0 {
		cfg.WatchMinBackoff = time.Second
	}
	if cfg.WatchMaxBackoff < cfg.WatchMinBackoff {
		cfg.WatchMaxBackoff = max(time.Minute, cfg.WatchMinBackoff)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		tokenFile: cfg.TokenFile, static: static, roots: static, log: cfg.Log.With("component", "trust-bundle-watch"),
		watchMin: cfg.WatchMinBackoff, watchMax: cfg.WatchMaxBackoff,
	}
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: cfg.ServerName,
		// The chain is verified in VerifyConnection, against roots that
		// grow when the service sends a new trust bundle.
		InsecureSkipVerify: true, //nolint:gosec // verified in verifyServer
		VerifyConnection:   c.verifyServer,
	}
	conn, err := grpc.NewClient(cfg.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(tokenCredentials{file: cfg.TokenFile}),
		// Within the service's keepalive enforcement (20s).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("certificate client: %w", err)
	}
	c.conn, c.api = conn, certsv1.NewCertificateServiceClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// CreateCertificate implements Issuer.
func (c *Client) CreateCertificate(ctx context.Context, csrPEM []byte, ttl time.Duration) (*Issued, error) {
	req := &certsv1.CreateCertificateRequest{Csr: csrPEM}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := c.api.CreateCertificate(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("certificate service: %w", err)
	}
	c.trust(resp.GetTrustBundle())
	return &Issued{
		ChainPEM:    resp.GetCertificateChain(),
		TrustBundle: TrustBundle{Version: resp.GetTrustBundleVersion(), PEM: resp.GetTrustBundle()},
	}, nil
}

// trust adds the roots of a bundle the service sent over a verified
// connection to those the service may be verified with.
func (c *Client) trust(bundlePEM []byte) {
	pool := c.static.Clone()
	if !pool.AppendCertsFromPEM(bundlePEM) {
		return
	}
	c.mu.Lock()
	c.roots = pool
	c.mu.Unlock()
}

func (c *Client) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the certificate service sent no certificate")
	}
	c.mu.Lock()
	roots := c.roots
	c.mu.Unlock()
	inter := x509.NewCertPool()
	for _, cert := range cs.PeerCertificates[1:] {
		inter.AddCert(cert)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       cs.ServerName,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verifying the certificate service: %w", err)
	}
	return nil
}

// tokenCredentials sends the token file's content as a bearer token, only
// over TLS.
type tokenCredentials struct{ file string }

func (t tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	data, err := os.ReadFile(t.file)
	if err != nil {
		return nil, fmt.Errorf("reading the ServiceAccount token: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return nil, fmt.Errorf("the ServiceAccount token file %s is empty", t.file)
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

func (tokenCredentials) RequireTransportSecurity() bool { return true }
