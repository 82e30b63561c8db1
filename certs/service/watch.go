package service

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/status"

	certsv1 "github.com/sluice-mesh/sluice/certs/api/v1"
	"github.com/sluice-mesh/sluice/certs/identity"
)

// WatchTrustBundle implements the API: authenticate as CreateCertificate
// does, send the current trust bundle, send every new one, and record the
// versions the agent acknowledges in Agents. The stream ends after
// MaxWatchAge (the agent reconnects with a fresh token) and when the
// service stops.
func (s *Service) WatchTrustBundle(stream certsv1.CertificateService_WatchTrustBundleServer) error {
	ctx := stream.Context()
	p, err := s.authenticate(ctx, "trust bundle")
	if err != nil {
		return err
	}
	id := identity.ID{TrustDomain: s.opts.TrustDomain, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount}
	key := s.agents.add(AgentStatus{ID: id.String(), Pod: p.Pod, Peer: peerAddr(ctx), ConnectedAt: s.opts.Now()})
	defer s.agents.remove(key)
	log := s.log.With("id", id.String(), "peer", peerAddr(ctx))
	log.Debug("agent watching the trust bundle", "pod", p.Pod)

	acks := make(chan *certsv1.TrustBundleAck)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case acks <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	age := time.NewTimer(s.watchAge())
	defer age.Stop()
	var sentVersion uint64
	var sentPEM []byte
	for {
		changed := s.caChanges()
		c := s.opts.CA()
		if v, pem := c.TrustBundleVersion(), c.TrustBundlePEM(); v != sentVersion || !bytes.Equal(pem, sentPEM) {
			if err := stream.Send(&certsv1.TrustBundle{Version: v, TrustBundle: pem}); err != nil {
				return err
			}
			sentVersion, sentPEM = v, pem
			s.metrics.pushes.Inc()
			s.agents.update(key, func(a *AgentStatus) bool { a.SentVersion = v; return false })
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stopping:
			return nil
		case <-age.C:
			return nil
		case <-changed:
		case m := <-acks:
			s.recordAck(key, m, log)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// recordAck notes what an agent says it applied.
func (s *Service) recordAck(key uint64, m *certsv1.TrustBundleAck, log *slog.Logger) {
	now := s.opts.Now()
	if m.GetError() != "" {
		s.metrics.applyErrors.Inc()
		log.Warn("an agent could not apply the trust bundle", "error", m.GetError(), "appliedVersion", m.GetAppliedVersion())
	}
	s.agents.update(key, func(a *AgentStatus) bool {
		if a.Pod == "" {
			a.Pod = m.GetPod()
		}
		notify := a.Error != m.GetError()
		a.Error = m.GetError()
		if v := m.GetAppliedVersion(); v != 0 && v != a.AppliedVersion {
			a.AppliedVersion, a.AppliedAt = v, now
			s.metrics.acks.Inc()
			notify = true
		}
		return notify
	})
}

// watchAge is MaxWatchAge ± 10%, so that streams opened together do not
// all reconnect together.
func (s *Service) watchAge() time.Duration {
	return time.Duration(float64(s.opts.MaxWatchAge) * (0.9 + 0.2*rand.Float64()))
}

// never is a channel never closed.
var never = make(chan struct{})

func (s *Service) caChanges() <-chan struct{} {
	if s.opts.CAChanges == nil {
		return never
	}
	return s.opts.CAChanges()
}
