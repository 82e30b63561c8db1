package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Case is one run of the matrix on the current world.
type Case struct {
	Name  string
	Fleet FleetOptions
	// Flips is the number of endpoint readiness flips (not ready, then
	// ready again, one service at a time).
	Flips int
	// NewServices created one at a time (then deleted, unmeasured).
	NewServices int
	// RouteChanges changes the weights of a GAMMA HTTPRoute splitting one
	// service's traffic with another (created and deleted unmeasured).
	RouteChanges int
	// Burst pod restarts spread over BurstWindow (0: none).
	Burst       int
	BurstWindow time.Duration
	// Restart restarts the control plane once the proxies hold their
	// config and times until every proxy holds it again.
	Restart bool
	// Timeout bounds each wait (default 60 s).
	Timeout time.Duration
	// Settle is the pause after each change (default 100 ms) and, ten
	// times over, before memory is read.
	Settle time.Duration
}

// Bench runs cases against one world, writer and control plane.
type Bench struct {
	World  *World
	Writer Writer
	CP     ControlPlane
	// XDSAddress is where the control plane serves (kept across restarts).
	XDSAddress string
	// Pinning describes the CPU placement, for the report.
	Pinning string
	Log     *slog.Logger
	// OnSteady, if set, is called once a case's proxies hold their config
	// and memory was read (e.g. to write a heap profile in-process).
	OnSteady func(c Case)

	endpoints int
}

// Populate grows the world to services × endpoints and writes what is new.
func (b *Bench) Populate(ctx context.Context, services, endpoints int) error {
	if b.endpoints == 0 {
		if err := b.Writer.Setup(ctx, b.World); err != nil {
			return err
		}
	}
	b.endpoints = endpoints
	added := b.World.Grow(services, endpoints)
	if len(added) == 0 {
		return nil
	}
	start := time.Now()
	if err := b.Writer.CreateServices(ctx, b.World, added); err != nil {
		return fmt.Errorf("populate: %w", err)
	}
	b.log().Info("world written", "services", services, "endpoints", endpoints, "added", len(added), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (b *Bench) log() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Log
}

// Run runs one case: a fresh control plane, P proxies, the changes.
func (b *Bench) Run(ctx context.Context, c Case) (res *CaseResult, err error) {
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	if c.Settle <= 0 {
		c.Settle = 100 * time.Millisecond
	}
	c.Fleet.NewServices = c.NewServices
	svcs := b.World.Services()
	res = &CaseResult{
		Name: c.Name, Services: len(svcs), Endpoints: b.endpoints, Proxies: c.Fleet.Proxies,
		Client: c.Fleet.Client, Protocol: protocolName(c.Fleet.Delta), StreamsPerConn: c.Fleet.StreamsPerConn,
		NodeFormat: c.Fleet.NodeFormat, Pinning: b.Pinning, Changes: map[string]*ChangeStats{},
	}
	b.log().Info("case", "name", c.Name, "services", len(svcs), "proxies", c.Fleet.Proxies, "client", c.Fleet.Client, "protocol", res.Protocol)

	inst, err := b.CP.Start(ctx, b.Writer.Source(), b.XDSAddress)
	if err != nil {
		return nil, err
	}
	defer func() {
		if inst != nil {
			err = errors.Join(err, inst.Stop())
		}
	}()
	if err := sleep(ctx, 10*c.Settle); err != nil {
		return nil, err
	}
	res.Baseline = b.memory(ctx, inst)

	fl, err := newFleet(c.Fleet, b.World, inst.XDSAddress)
	if err != nil {
		return nil, err
	}
	defer fl.stop()

	// Connect: every proxy holds full config.
	want := b.World.Expected()
	initial := &expectation{
		name:       "initial config",
		subscribed: func(*proxy) bool { return true },
		check:      func(p *proxy) bool { return p.complete(want) },
	}
	fl.tr.add(initial)
	cpu0 := b.cpu(inst)
	rx0 := fl.rxBytes.Load()
	initial.start.Store(time.Now().UnixNano())
	if err := fl.start(); err != nil {
		return nil, err
	}
	if err := initial.wait(ctx, c.Timeout*5); err != nil {
		return res, fmt.Errorf("connect: %w (stream errors %d, last %v)", err, fl.streamErrs, fl.lastErr)
	}
	fl.tr.remove(initial)
	res.Connect = &PhaseStats{Seconds: initial.latency().Seconds(), CPUSeconds: b.cpu(inst) - cpu0, RxBytes: fl.rxBytes.Load() - rx0}
	b.log().Info("connected", "proxies", len(fl.proxies), "took", initial.latency().Round(time.Millisecond))
	if err := sleep(ctx, 10*c.Settle); err != nil {
		return nil, err
	}
	res.Steady = b.memory(ctx, inst)
	if b.OnSteady != nil {
		b.OnSteady(c)
	}

	if c.Flips > 0 {
		if err := b.flips(ctx, c, fl, inst, res); err != nil {
			return res, err
		}
	}
	if c.NewServices > 0 {
		if err := b.newServices(ctx, c, fl, inst, res); err != nil {
			return res, err
		}
	}
	if c.RouteChanges > 0 {
		if err := b.routeWeights(ctx, c, fl, inst, res); err != nil {
			return res, err
		}
	}
	if c.Burst > 0 {
		if err := b.burst(ctx, c, fl, inst, res); err != nil {
			return res, err
		}
	}
	if c.Restart {
		next, err := b.restart(ctx, c, fl, inst, res)
		inst = next
		if err != nil {
			return res, err
		}
	}
	res.NACKs = fl.nacks()
	res.StreamErrors = fl.streamErrs
	return res, nil
}

func protocolName(delta bool) string {
	if delta {
		return "delta"
	}
	return "sotw"
}

// memory reads RSS and the Go heap in use.
func (b *Bench) memory(ctx context.Context, inst *Instance) Memory {
	var m Memory
	if inst.PID > 0 {
		if rss, err := rssBytes(inst.PID); err == nil {
			m.RSSBytes = rss
		}
	}
	if inst.DebugURL != "" {
		if v, err := scrapeMetric(ctx, inst.DebugURL, "go_memstats_heap_inuse_bytes"); err == nil {
			m.HeapInuseBytes = int64(v)
		}
	}
	return m
}

func (b *Bench) cpu(inst *Instance) float64 {
	if inst.PID <= 0 {
		return 0
	}
	s, err := cpuSeconds(inst.PID)
	if err != nil {
		b.log().Warn("cpu time", "err", err)
	}
	return s
}

// measured wraps a sequence of changes of one kind: CPU and bytes over the
// phase, latency per change.
type measured struct {
	b     *Bench
	inst  *Instance
	fl    *fleet
	stats *ChangeStats
	cpu0  float64
	rx0   int64
	lat   []time.Duration
}

func (b *Bench) measure(fl *fleet, inst *Instance, res *CaseResult, kind string) *measured {
	st := &ChangeStats{Kind: kind}
	res.Changes[kind] = st
	return &measured{b: b, inst: inst, fl: fl, stats: st, cpu0: b.cpu(inst), rx0: fl.rxBytes.Load()}
}

func (m *measured) add(e *expectation) {
	m.lat = append(m.lat, e.latency())
	m.stats.Proxies = max(m.stats.Proxies, e.want)
}

func (m *measured) done() {
	m.stats.Count = len(m.lat)
	m.stats.setLatencies(m.lat)
	if m.stats.Count > 0 {
		m.stats.CPUSecondsPerChange = (m.b.cpu(m.inst) - m.cpu0) / float64(m.stats.Count)
		m.stats.RxBytesPerChange = float64(m.fl.rxBytes.Load()-m.rx0) / float64(m.stats.Count)
	}
}

// flips marks an endpoint not ready, then ready again, c.Flips times in all.
func (b *Bench) flips(ctx context.Context, c Case, fl *fleet, inst *Instance, res *CaseResult) error {
	svcs := b.World.Services()
	deps := max(c.Fleet.GRPCDeps, 1)
	m := b.measure(fl, inst, res, KindEndpointFlip)
	defer m.done()
	for k := range c.Flips {
		pair := k / 2
		s := svcs[(pair%len(fl.proxies))*deps%len(svcs)]
		slot := pair % len(s.Pods)
		ready := k%2 == 1
		pod := b.World.SetReady(s, slot, ready)
		fqdn, addr := s.FQDN(b.World.Domain), endpointAddr(pod)
		e := &expectation{
			name:       fmt.Sprintf("flip %s %s ready=%v", s.Key(), addr, ready),
			subscribed: func(p *proxy) bool { return p.subscribedTo(fqdn) },
			check: func(p *proxy) bool {
				f := p.edsBySvc[fqdn]
				return f != nil && f.healthy(addr) == ready
			},
		}
		if err := b.change(ctx, c, fl, e, func() error { return b.Writer.UpdateEndpoints(ctx, b.World, s) }); err != nil {
			return err
		}
		m.add(e)
	}
	return nil
}

// change registers e, runs write, times from its return and waits.
func (b *Bench) change(ctx context.Context, c Case, fl *fleet, e *expectation, write func() error) error {
	if !fl.tr.add(e) {
		return fmt.Errorf("%s: no proxy subscribes to it", e.name)
	}
	defer fl.tr.remove(e)
	if err := write(); err != nil {
		return err
	}
	e.start.Store(time.Now().UnixNano())
	if err := e.wait(ctx, c.Timeout); err != nil {
		return err
	}
	b.log().Debug("change", "name", e.name, "proxies", e.want, "latency", e.latency())
	return sleep(ctx, c.Settle)
}

// newServices creates services one at a time, then deletes them.
func (b *Bench) newServices(ctx context.Context, c Case, fl *fleet, inst *Instance, res *CaseResult) error {
	m := b.measure(fl, inst, res, KindNewService)
	var created []*Service
	defer func() {
		for _, s := range created {
			if err := b.Writer.DeleteService(ctx, b.World, s); err != nil {
				b.log().Warn("delete new service", "service", s.Key(), "err", err)
			}
			b.World.Remove(s)
		}
		// Let the removals reach the proxies before the next phase.
		_ = sleep(ctx, 10*c.Settle)
	}()
	for k := range c.NewServices {
		s := b.World.AddNew(NewServiceName(k), b.endpoints)
		created = append(created, s)
		fqdn := s.FQDN(b.World.Domain)
		var eps []string
		for _, p := range s.Pods {
			eps = append(eps, endpointAddr(p))
		}
		var listenerAddr atomic.Pointer[string]
		e := &expectation{
			name:       "new service " + s.Key(),
			subscribed: func(p *proxy) bool { return p.subscribedTo(fqdn) },
			check: func(p *proxy) bool {
				f := p.edsBySvc[fqdn]
				if f == nil || len(f.endpoints) != len(eps) {
					return false
				}
				for _, ep := range eps {
					if !f.healthy(ep) {
						return false
					}
				}
				if p.client != ClientEnvoy {
					return true
				}
				a := listenerAddr.Load()
				return a != nil && p.ldsByAddr[*a] != ""
			},
		}
		write := func() error {
			if err := b.Writer.CreateServices(ctx, b.World, []*Service{s}); err != nil {
				return err
			}
			a := fmt.Sprintf("%s:%d", b.World.ClusterIP(s), ServicePort)
			listenerAddr.Store(&a)
			return nil
		}
		if err := b.change(ctx, c, fl, e, write); err != nil {
			m.done()
			return err
		}
		m.add(e)
	}
	m.done()
	return nil
}

// routeWeights attaches an HTTPRoute to a service that proxies subscribe
// to, splitting its traffic with another service of its namespace, then
// changes the split c.RouteChanges times, timing each, and removes it.
func (b *Bench) routeWeights(ctx context.Context, c Case, fl *fleet, inst *Instance, res *CaseResult) error {
	svcs := b.World.Services()
	n := len(b.World.Namespaces)
	if len(svcs) <= n {
		return fmt.Errorf("route weights need two services in a namespace (%d services, %d namespaces)", len(svcs), n)
	}
	r := &Route{Service: svcs[0], Other: svcs[n], Weight: 90}
	fqdn := r.Service.FQDN(b.World.Domain)
	expect := func(name string) *expectation {
		sig := weightSignature(r, b.World.Domain)
		return &expectation{
			name:       name,
			subscribed: func(p *proxy) bool { return p.subscribedTo(fqdn) },
			check: func(p *proxy) bool {
				for _, h := range p.state[resourcev3.RouteType] {
					w := h.f.vhostWeights
					if w[fqdn] == sig || w[fmt.Sprintf("%s:%d", fqdn, ServicePort)] == sig {
						return true
					}
				}
				return false
			},
		}
	}
	set := func() error { return b.Writer.SetRoute(ctx, b.World, r) }
	if err := b.change(ctx, c, fl, expect("route created"), set); err != nil {
		return err
	}
	defer func() {
		if err := b.Writer.DeleteRoute(ctx, b.World, r); err != nil {
			b.log().Warn("delete route", "err", err)
		}
		_ = sleep(ctx, 10*c.Settle)
	}()
	m := b.measure(fl, inst, res, KindRouteWeight)
	defer m.done()
	for k := range c.RouteChanges {
		r.Weight = 10 + 80*(k%2)
		e := expect(fmt.Sprintf("route %s weight %d", r.Service.Key(), r.Weight))
		if err := b.change(ctx, c, fl, e, set); err != nil {
			return err
		}
		m.add(e)
	}
	return nil
}

// burst restarts c.Burst pods of distinct services, spread evenly over
// c.BurstWindow, and times each restart and the whole burst.
func (b *Bench) burst(ctx context.Context, c Case, fl *fleet, inst *Instance, res *CaseResult) error {
	svcs := b.World.Services()
	deps := max(c.Fleet.GRPCDeps, 1)
	m := b.measure(fl, inst, res, KindPodRestart)
	defer m.done()
	type restart struct {
		s         *Service
		old, repl *Pod
		e         *expectation
	}
	var rs []*restart
	used := map[*Service]bool{}
	for k := range c.Burst {
		var s *Service
		for j := 0; j < len(svcs); j++ {
			cand := svcs[((k+j)%len(fl.proxies))*deps%len(svcs)]
			if c.Fleet.Client == ClientEnvoy {
				cand = svcs[(k*len(svcs)/c.Burst+j)%len(svcs)]
			}
			if !used[cand] {
				s = cand
				break
			}
		}
		if s == nil {
			return fmt.Errorf("burst of %d restarts: only %d services", c.Burst, len(used))
		}
		used[s] = true
		slot := k % len(s.Pods)
		old, repl := b.World.Restart(s, slot)
		fqdn, oldAddr, newAddr := s.FQDN(b.World.Domain), endpointAddr(old), endpointAddr(repl)
		r := &restart{s: s, old: old, repl: repl, e: &expectation{
			name:       fmt.Sprintf("restart %s/%s", s.Namespace, old.Name),
			subscribed: func(p *proxy) bool { return p.subscribedTo(fqdn) },
			check: func(p *proxy) bool {
				f := p.edsBySvc[fqdn]
				if f == nil || !f.healthy(newAddr) {
					return false
				}
				_, stale := f.endpoints[oldAddr]
				return !stale
			},
		}}
		if !fl.tr.add(r.e) {
			return fmt.Errorf("%s: no proxy subscribes to it", r.e.name)
		}
		rs = append(rs, r)
	}
	defer func() {
		for _, r := range rs {
			fl.tr.remove(r.e)
		}
	}()
	step := c.BurstWindow / time.Duration(len(rs))
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	var lastWrite atomic.Int64
	for i, r := range rs {
		wg.Go(func() {
			if err := sleep(ctx, time.Until(begin.Add(time.Duration(i)*step))); err != nil {
				errs[i] = err
				return
			}
			errs[i] = b.Writer.RestartPod(ctx, b.World, r.s, r.old, r.repl)
			now := time.Now().UnixNano()
			r.e.start.Store(now)
			for {
				l := lastWrite.Load()
				if now <= l || lastWrite.CompareAndSwap(l, now) {
					break
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	var last int64
	for _, r := range rs {
		if err := r.e.wait(ctx, c.Timeout); err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		m.add(r.e)
		last = max(last, r.e.last.Load())
	}
	res.Burst = &BurstStats{
		Restarts:       len(rs),
		WindowSeconds:  c.BurstWindow.Seconds(),
		WritesSeconds:  time.Duration(lastWrite.Load() - begin.UnixNano()).Seconds(),
		ConvergeAfterS: max(time.Duration(last-lastWrite.Load()), 0).Seconds(),
		TotalSeconds:   time.Duration(last - begin.UnixNano()).Seconds(),
	}
	return sleep(ctx, c.Settle)
}

// restart stops the control plane and starts a new one at the same
// address; it returns the new instance.
func (b *Bench) restart(ctx context.Context, c Case, fl *fleet, inst *Instance, res *CaseResult) (*Instance, error) {
	gens := make([]int64, len(fl.proxies))
	for i, p := range fl.proxies {
		gens[i] = p.streamGen.Load()
	}
	want := b.World.Expected()
	e := &expectation{
		name:       "restart",
		subscribed: func(*proxy) bool { return true },
		// On a new stream, with everything (re)sent or confirmed.
		check: func(p *proxy) bool { return p.streamGen.Load() > gens[p.idx] && p.complete(want) },
	}
	fl.tr.add(e)
	defer fl.tr.remove(e)
	stopStart := time.Now()
	if err := inst.Stop(); err != nil {
		return nil, err
	}
	stopped := time.Since(stopStart)
	rx0 := fl.rxBytes.Load()
	next, err := b.CP.Start(ctx, b.Writer.Source(), b.XDSAddress)
	if err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	e.start.Store(next.Started.UnixNano())
	ready := time.Since(next.Started)
	if err := e.wait(ctx, c.Timeout*5); err != nil {
		return next, fmt.Errorf("restart: %w", err)
	}
	res.Restart = &RestartStats{
		StopSeconds:   stopped.Seconds(),
		ReadySeconds:  ready.Seconds(),
		ResyncSeconds: e.latency().Seconds(),
		CPUSeconds:    b.cpu(next),
		RxBytes:       fl.rxBytes.Load() - rx0,
	}
	b.log().Info("restarted", "ready", ready.Round(time.Millisecond), "allSynced", e.latency().Round(time.Millisecond))
	return next, nil
}
