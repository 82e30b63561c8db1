package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
)

// FleetOptions describe the simulated proxies.
type FleetOptions struct {
	Proxies int
	// Client is ClientEnvoy or ClientGRPC; Delta selects delta xDS (Envoy
	// only).
	Client string
	Delta  bool
	// NodeFormat is NodeSluice, NodeIstio or NodeBare.
	NodeFormat string
	// StreamsPerConn is how many ADS streams share a gRPC connection.
	StreamsPerConn int
	// GRPCDeps is how many services each gRPC-like proxy calls.
	GRPCDeps int
	// NewServices is how many services the case will create; gRPC-like
	// proxies dial them in advance.
	NewServices int
	// DecodeEvery decodes every payload, without the shared cache.
	DecodeEvery bool
}

// fleet is the set of simulated proxies and their connections.
type fleet struct {
	opts    FleetOptions
	addr    string
	conns   []*grpc.ClientConn
	proxies []*proxy
	dec     *decoder
	tr      *tracker
	rxBytes atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	streamErrs int
	lastErr    error
	rng        *rand.Rand
}

// newFleet prepares proxies impersonating pods of w. Start connects them.
func newFleet(opts FleetOptions, w *World, addr string) (*fleet, error) {
	if opts.Delta && opts.Client == ClientGRPC {
		return nil, fmt.Errorf("gRPC clients speak SotW only (grpc-go has no delta xDS)")
	}
	if opts.Client != ClientEnvoy && opts.Client != ClientGRPC {
		return nil, fmt.Errorf("unknown client %q (want %s or %s)", opts.Client, ClientEnvoy, ClientGRPC)
	}
	f := &fleet{opts: opts, addr: addr, dec: newDecoder(opts.DecodeEvery), tr: newTracker(), rng: rand.New(rand.NewPCG(1, 2))}
	svcs := w.Services()
	if len(svcs) == 0 {
		return nil, fmt.Errorf("no services to impersonate pods of")
	}
	seen := map[string]int{}
	for i := range opts.Proxies {
		s := svcs[i%len(svcs)]
		pod := s.Pods[(i/len(svcs))%len(s.Pods)]
		who := identity{pod: pod.Name, ns: s.Namespace, sa: s.ServiceAccount, ip: pod.IP, zone: pod.Zone, service: s.Name}
		who.id = pod.Name + "." + s.Namespace
		if n := seen[who.id]; n > 0 {
			// More proxies than pods: the same pod, a distinct node id.
			who.id = fmt.Sprintf("%s~%d", who.id, n)
		}
		seen[pod.Name+"."+s.Namespace]++
		node, err := nodeOf(opts.NodeFormat, opts.Client, w.Domain, who)
		if err != nil {
			return nil, err
		}
		p := &proxy{
			idx: i, f: f, who: who, node: node, client: opts.Client, delta: opts.Delta,
			state:     map[string]map[string]held{},
			edsBySvc:  map[string]*fact{},
			ldsByAddr: map[string]string{},
			sent:      map[string][]string{},
			want:      map[string][]string{},
			version:   map[string]string{},
			nonce:     map[string]string{},
			answered:  map[string]bool{},
			depSet:    map[string]bool{},
		}
		if opts.Client == ClientGRPC {
			for k := range opts.GRPCDeps {
				d := svcs[(i*opts.GRPCDeps+k)%len(svcs)]
				p.addDep(d.FQDN(w.Domain))
			}
			for k := range opts.NewServices {
				p.addDep(w.NewServiceFQDN(k))
			}
		}
		p.resubscribe()
		f.proxies = append(f.proxies, p)
	}
	f.tr.proxies = f.proxies
	return f, nil
}

func (p *proxy) addDep(fqdn string) {
	if p.depSet[fqdn] {
		return
	}
	p.depSet[fqdn] = true
	p.deps = append(p.deps, fmt.Sprintf("%s:%d", fqdn, ServicePort))
}

// start opens the connections and the proxies' streams.
func (f *fleet) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	per := max(f.opts.StreamsPerConn, 1)
	n := (len(f.proxies) + per - 1) / per
	for range n {
		conn, err := grpc.NewClient(f.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(byteCounter{&f.rxBytes}),
			// Many streams share a connection: give each room so that one
			// slow reader does not stall the others.
			grpc.WithInitialWindowSize(1<<20),
			grpc.WithInitialConnWindowSize(64<<20),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
			// Reconnect quickly after a control-plane restart (Envoy's
			// default base interval is 500 ms, grpc-go's 1 s).
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 5 * time.Second,
			}),
		)
		if err != nil {
			cancel()
			return fmt.Errorf("connect to %s: %w", f.addr, err)
		}
		f.conns = append(f.conns, conn)
	}
	for i, p := range f.proxies {
		conn := f.conns[i/per]
		f.wg.Go(func() { p.run(ctx, conn) })
	}
	return nil
}

// stop ends every stream and connection.
func (f *fleet) stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for _, c := range f.conns {
		c.Close()
	}
}

func (f *fleet) noteStreamError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streamErrs++
	f.lastErr = err
}

func (f *fleet) rand(n int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Int64N(max(n, 1))
}

func (f *fleet) nacks() int64 {
	var n int64
	for _, p := range f.proxies {
		n += p.nacks.Load()
	}
	return n
}

// byteCounter counts the wire bytes of received messages.
type byteCounter struct{ n *atomic.Int64 }

func (b byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (b byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		b.n.Add(int64(in.WireLength))
	}
}
func (b byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (b byteCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
