package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/service"
)

// Defaults of Config.
const (
	DefaultThreshold      = 0.8
	DefaultReloadInterval = 10 * time.Second
	DefaultReportInterval = time.Minute
	// minSpacing is the least time between two passes woken by agents'
	// acknowledgements, so that a thousand agents acknowledging together
	// cost a few passes, not a thousand.
	minSpacing = time.Second
	// passTimeout bounds the store operations of one pass.
	passTimeout = 30 * time.Second
)

// Agents is what the machine needs to know of the agents connected to this
// replica (service.Agents).
type Agents interface {
	List() []service.AgentStatus
	Lagging(version uint64) []service.AgentStatus
	Changed() <-chan struct{}
}

// Config configures a Machine.
type Config struct {
	// Store keeps the CA and the rotation. Required; it must hold a CA
	// (ca.LoadOrCreate first).
	Store ca.Store
	// Agents are the agents watching the trust bundle here. Required.
	Agents Agents
	// IsLeader says whether this replica drives rotations; nil: always.
	IsLeader func() bool
	// Replica names this replica in the reports (the pod name); the host
	// name when empty.
	Replica string
	// ReadOnly: the operator provides the CA. Never rotate it nor write
	// the store; only follow changes made to it.
	ReadOnly bool
	// Generate says how new roots and intermediates are made (trust
	// domain, lifetimes); its Now is ignored.
	Generate ca.GenerateOptions
	// Threshold is the fraction of a root's or intermediate's life at which
	// it is rotated (0.8).
	Threshold float64
	// MaxLeafTTL is the longest lifetime of a leaf the service issues.
	// Required: WaitLeaves waits that long.
	MaxLeafTTL time.Duration
	// ReloadInterval is how often the store is read again (10s): how long
	// other replicas take to serve a change.
	ReloadInterval time.Duration
	// ReportInterval is how often this replica's report is written even
	// when unchanged (1m); reports older than three intervals are ignored
	// (their replica is gone).
	ReportInterval time.Duration
	// MinBundleWait is the least time WaitBundle and DropOldRoot last
	// (2 × ReloadInterval): other replicas must load and push the bundle
	// and report before the leader can count their agents.
	MinBundleWait time.Duration
	// BundleTimeout ends WaitBundle and DropOldRoot although agents still
	// lag (they are logged and counted); 0 waits for ever.
	BundleTimeout time.Duration
	// Backdate of the certificates signed (ca.DefaultBackdate).
	Backdate time.Duration
	Clock    clock.Clock
	// Registerer gets the metrics; none when nil.
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("no store"))
	}
	if c.Agents == nil {
		errs = append(errs, errors.New("no agents"))
	}
	if c.MaxLeafTTL <= 0 {
		errs = append(errs, errors.New("no maximum leaf lifetime"))
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.Threshold <= 0 || c.Threshold >= 1 {
		errs = append(errs, fmt.Errorf("threshold %v is not in (0, 1)", c.Threshold))
	}
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = DefaultReportInterval
	}
	if c.MinBundleWait == 0 {
		c.MinBundleWait = 2 * c.ReloadInterval
	}
	if c.MinBundleWait < 0 || c.BundleTimeout < 0 || (c.BundleTimeout > 0 && c.BundleTimeout < c.MinBundleWait) {
		errs = append(errs, fmt.Errorf("need 0 <= minimum bundle wait (%s) <= bundle timeout (%s, or 0 for none)", c.MinBundleWait, c.BundleTimeout))
	}
	if c.IsLeader == nil {
		c.IsLeader = func() bool { return true }
	}
	if c.Replica == "" {
		c.Replica, _ = os.Hostname()
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("CA rotation: %w", err)
	}
	return c, nil
}

// Machine follows and drives the CA's rotation (see the package comment).
type Machine struct {
	cfg     Config
	log     *slog.Logger
	source  *ca.Source
	metrics *metrics
	wake    chan struct{}

	// view is what Status and the metrics read, published at the end of
	// every pass so that they never wait for the store.
	view atomic.Pointer[view]

	// mu serializes passes and guards the fields below.
	mu       sync.Mutex
	state    *ca.State
	loadedAt time.Time
	// reported is the last report written, reportedAt when; reportDue
	// when a changed report is to be written.
	reported   *ca.ReplicaReport
	reportedAt time.Time
	// waiting lists the agents the last bundle wait waited for; blocked
	// says why a due rotation cannot start; lastErr is the last failure.
	waiting []string
	lagging int
	// timedOut lists the agents a bundle wait ended without, until the
	// transition is stored.
	timedOut []string
	blocked  string
	lastErr  string
}

// New loads the state from the store and returns a machine serving its CA
// (Source). Nothing is written until Run or Reconcile.
func New(ctx context.Context, cfg Config) (*Machine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := cfg.Store.LoadState(ctx)
	if err != nil {
		return nil, fmt.Errorf("CA rotation: %w", err)
	}
	c, err := newCA(cfg, st)
	if err != nil {
		return nil, err
	}
	m := &Machine{
		cfg: cfg, log: cfg.Log.With("component", "ca-rotation"), source: ca.NewSource(c), wake: make(chan struct{}, 1),
		state: st, loadedAt: cfg.Clock.Now(),
	}
	if m.metrics, err = newMetrics(cfg.Registerer, m); err != nil {
		return nil, err
	}
	m.metrics.setPhase(st)
	m.publish()
	return m, nil
}

// view is a pass's outcome, for Status and the metrics.
type view struct {
	state   *ca.State
	lagging int
	waiting []string
	blocked string
	lastErr string
}

// publish makes the current fields the view; the caller holds mu (or owns
// m).
func (m *Machine) publish() {
	m.view.Store(&view{state: m.state, lagging: m.lagging, waiting: m.waiting, blocked: m.blocked, lastErr: m.lastErr})
}

// Source is the CA in use, for the certificate service.
func (m *Machine) Source() *ca.Source { return m.source }

func newCA(cfg Config, st *ca.State) (*ca.CA, error) {
	c, err := ca.New(st.Material, ca.Options{Now: cfg.Clock.Now, Backdate: cfg.Backdate, BundleVersion: st.TrustBundleVersion()})
	if err != nil {
		return nil, fmt.Errorf("the CA in %s: %w", cfg.Store, err)
	}
	return c, nil
}

// Run reconciles until ctx ends: every ReloadInterval, when a timer of the
// rotation is due, when agents acknowledge, and when Request is called.
// Errors are logged and retried; it returns nil when ctx ends.
func (m *Machine) Run(ctx context.Context) error {
	m.log.Info("CA rotation running", "store", m.cfg.Store.String(), "replica", m.cfg.Replica, "readOnly", m.cfg.ReadOnly,
		"threshold", m.cfg.Threshold, "maxLeafTTL", m.cfg.MaxLeafTTL, "minBundleWait", m.cfg.MinBundleWait, "bundleTimeout", m.cfg.BundleTimeout)
	for {
		changed := m.cfg.Agents.Changed()
		next, err := m.Reconcile(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			m.log.Error("CA rotation", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-m.cfg.Clock.After(max(next.Sub(m.cfg.Clock.Now()), time.Millisecond)):
		case <-changed:
			select {
			case <-ctx.Done():
				return nil
			case <-m.cfg.Clock.After(minSpacing):
			}
		}
	}
}

// Request records an on-demand rotation in the store, as `sluice ca
// rotate` does, and wakes Run.
func (m *Machine) Request(ctx context.Context, r ca.RotationRequest) error {
	if err := m.cfg.Store.RequestRotation(ctx, r); err != nil {
		return err
	}
	m.mu.Lock()
	m.loadedAt = time.Time{} // read it at the next pass
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return nil
}

// Reconcile makes one pass: read the store if ReloadInterval passed, serve
// its CA, write this replica's report, and, on the leader, make every
// transition due now. It returns when the next pass is due.
func (m *Machine) Reconcile(ctx context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.publish()
	// A store that hangs must not hold the rotation for ever.
	ctx, cancel := context.WithTimeout(ctx, max(passTimeout, m.cfg.ReloadInterval))
	defer cancel()
	now := m.cfg.Clock.Now()
	next := now.Add(m.cfg.ReloadInterval)
	if now.Sub(m.loadedAt) >= m.cfg.ReloadInterval || m.loadedAt.IsZero() {
		if err := m.reload(ctx, now); err != nil {
			return next, m.fail(err)
		}
	}
	at, wrote, err := m.report(ctx, now)
	if err != nil {
		m.log.Warn("could not write this replica's report", "error", err)
	}
	if at.Before(next) {
		next = at
	}
	leader := !m.cfg.ReadOnly && m.cfg.IsLeader()
	if wrote && leader {
		// The report changed the store's revision: read it again, or the
		// next transition would conflict with our own report.
		if err := m.reload(ctx, now); err != nil {
			return next, m.fail(err)
		}
	}
	if err := m.apply(m.state); err != nil {
		return next, m.fail(err)
	}
	if !leader {
		m.lagging = m.countLagging(now, m.state, m.state.TrustBundleVersion())
		m.blocked, m.waiting = "", nil
		return next, m.fail(nil)
	}
	defer func() { m.lagging = m.countLagging(now, m.state, m.state.TrustBundleVersion()) }()
	for range 16 {
		m.timedOut, m.waiting = nil, nil
		st, wake, err := m.decide(now, m.state)
		if err != nil {
			return next, m.fail(err)
		}
		if st == nil {
			if !wake.IsZero() && wake.Before(next) {
				next = wake
			}
			return next, m.fail(nil)
		}
		if _, err := m.cfg.Store.Update(ctx, st); errors.Is(err, ca.ErrConflict) {
			m.log.Info("the CA changed meanwhile (another replica?); reading it again", "phase", st.Phase())
		} else if err != nil {
			return next, m.fail(fmt.Errorf("storing phase %s: %w", st.Phase(), err))
		} else {
			m.transitioned(m.state, st)
			if m.timedOut != nil {
				m.log.Warn("went on without agents that have not applied the trust bundle", "phase", m.state.Phase(),
					"trustBundleVersion", m.state.TrustBundleVersion(), "lagging", m.timedOut)
				m.metrics.timeouts.Inc()
			}
		}
		if err := m.reload(ctx, now); err != nil {
			return next, m.fail(err)
		}
		if err := m.apply(m.state); err != nil {
			return next, m.fail(err)
		}
	}
	return next, m.fail(errors.New("too many transitions in one pass"))
}

func (m *Machine) fail(err error) error {
	if err == nil {
		m.lastErr = ""
		return nil
	}
	m.lastErr = err.Error()
	m.metrics.errors.Inc()
	return err
}

func (m *Machine) reload(ctx context.Context, now time.Time) error {
	st, err := m.cfg.Store.LoadState(ctx)
	if err != nil {
		return fmt.Errorf("reading the CA: %w", err)
	}
	m.state, m.loadedAt = st, now
	m.metrics.setPhase(st)
	return nil
}

// apply serves st's CA unless it is the one served.
func (m *Machine) apply(st *ca.State) error {
	cur := m.source.Current()
	if cur.TrustBundleVersion() == st.TrustBundleVersion() &&
		bytes.Equal(cur.TrustBundlePEM(), ca.EncodeCertificates(st.Material.Roots...)) &&
		cur.Material().Signer().Equal(st.Material.Signer()) {
		return nil
	}
	c, err := newCA(m.cfg, st)
	if err != nil {
		return err
	}
	m.source.Set(c)
	m.log.Info("serving a new CA", "phase", st.Phase(), "trustBundleVersion", c.TrustBundleVersion(), "roots", len(st.Material.Roots),
		"signer", st.Material.Signer().SerialNumber.Text(16))
	return nil
}

// transitioned logs and counts a stored transition.
func (m *Machine) transitioned(from, to *ca.State) {
	if from.Phase() == to.Phase() {
		m.log.Info("CA rotation updated", "phase", to.Phase(), "requestResult", to.Rotation.RequestResult)
		return
	}
	m.log.Info("CA rotation", "from", from.Phase(), "to", to.Phase(), "kind", to.Rotation.Kind,
		"reason", to.Rotation.Reason, "trustBundleVersion", to.TrustBundleVersion())
	m.metrics.transitions.WithLabelValues(string(to.Phase())).Inc()
	if to.Phase() == ca.PhaseIdle && from.Phase() != ca.PhaseIdle {
		m.metrics.completed.WithLabelValues(string(from.Rotation.Kind)).Inc()
	}
}
