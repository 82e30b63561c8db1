package agent

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/identity"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func testID(sa string) identity.ID {
	return identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: sa}
}

func newCA(t *testing.T, now func() time.Time) *ca.CA {
	t.Helper()
	m, err := ca.Generate(ca.GenerateOptions{TrustDomain: "cluster.local", Now: now()})
	require.NoError(t, err)
	c, err := ca.New(m, ca.Options{Now: now})
	require.NoError(t, err)
	return c
}

// caIssuer signs directly with c, checking the CSR like the service does.
func caIssuer(c *ca.CA, ttl time.Duration) IssuerFunc {
	return func(_ context.Context, csrPEM []byte, _ time.Duration) (*Issued, error) {
		csr, id, err := ca.ParseCSR(csrPEM, 8<<10)
		if err != nil {
			return nil, err
		}
		iss, err := c.IssueLeaf(ca.LeafRequest{PublicKey: csr.PublicKey, ID: id, TTL: ttl})
		if err != nil {
			return nil, err
		}
		return &Issued{ChainPEM: iss.ChainPEM, TrustBundle: TrustBundle{Version: iss.TrustBundleVersion, PEM: iss.TrustBundlePEM}}, nil
	}
}

// issue makes credentials for id the way the agent does.
func issue(t *testing.T, c *ca.CA, id identity.ID, now time.Time) *Credentials {
	t.Helper()
	key, csr, err := newKeyAndCSR(id)
	require.NoError(t, err)
	iss, err := caIssuer(c, time.Hour)(context.Background(), csr, 0)
	require.NoError(t, err)
	creds, err := newCredentials(id, key, iss.ChainPEM, iss.TrustBundle, now)
	require.NoError(t, err)
	return creds
}

// recorder is a Publisher remembering what it got; fail makes it refuse.
type recorder struct {
	mu   sync.Mutex
	got  []*Credentials
	ch   chan *Credentials
	fail bool
}

func newRecorder() *recorder { return &recorder{ch: make(chan *Credentials, 16)} }

func (r *recorder) Publish(_ context.Context, c *Credentials) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return context.DeadlineExceeded
	}
	r.got = append(r.got, c)
	r.ch <- c
	return nil
}

func (r *recorder) setFail(b bool) {
	r.mu.Lock()
	r.fail = b
	r.mu.Unlock()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func next(t *testing.T, ch <-chan *Credentials) *Credentials {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no credentials published")
		return nil
	}
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o600) }

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
