package load

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// adsOrder is the order types are requested in on a new stream.
var adsOrder = []string{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.EndpointType}

// held is one resource a proxy holds.
type held struct {
	f *fact
	// version is the delta resource version ("" for SotW).
	version string
}

// proxy is one simulated proxy: one ADS stream at a time, reconnecting
// when it ends. Everything but the counters is owned by its goroutine.
type proxy struct {
	idx    int
	f      *fleet
	who    identity
	node   *corev3.Node
	client string
	delta  bool
	// deps are the listener names a gRPC-like proxy dials; depSet their
	// service FQDNs (for expectations).
	deps   []string
	depSet map[string]bool

	state map[string]map[string]held
	// edsBySvc indexes EDS by service FQDN, ldsByAddr LDS by socket address.
	edsBySvc  map[string]*fact
	ldsByAddr map[string]string
	// sent are the by-name subscriptions last sent, per type.
	sent map[string][]string
	// want are the by-name subscriptions the state calls for, per type.
	want map[string][]string
	// version and nonce per type of the last response (SotW version_info
	// of the last ACKed response; nonce of the last received).
	version map[string]string
	nonce   map[string]string

	// streamGen counts streams opened; answered are the types answered on
	// the current one.
	streamGen atomic.Int64
	answered  map[string]bool

	responses atomic.Int64
	nacks     atomic.Int64
}

func (p *proxy) wildcard(typ string) bool {
	return p.client == ClientEnvoy && (typ == resourcev3.ClusterType || typ == resourcev3.ListenerType)
}

// chainOrder is the order subscriptions derive from each other: listeners
// name route configurations, which name clusters, which name endpoints.
var chainOrder = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// desired is the by-name subscription of typ (nil for a wildcard type), as
// computed by the last resubscribe.
func (p *proxy) desired(typ string) []string { return p.want[typ] }

// resubscribe recomputes the by-name subscriptions from the state, in
// chain order, dropping what is no longer subscribed (a cluster removed
// takes its endpoints with it). It reports whether anything changed.
func (p *proxy) resubscribe() {
	for _, typ := range chainOrder {
		if p.wildcard(typ) {
			continue
		}
		set := map[string]bool{}
		switch {
		case typ == resourcev3.ListenerType:
			for _, d := range p.deps {
				set[d] = true
			}
		case typ == resourcev3.RouteType:
			for _, h := range p.state[resourcev3.ListenerType] {
				for _, r := range h.f.routeNames {
					set[r] = true
				}
			}
		case typ == resourcev3.ClusterType:
			for _, h := range p.state[resourcev3.RouteType] {
				for _, c := range h.f.clusters {
					set[c] = true
				}
			}
		case typ == resourcev3.EndpointType:
			for _, h := range p.state[resourcev3.ClusterType] {
				if h.f.edsName != "" {
					set[h.f.edsName] = true
				}
			}
		}
		for name := range p.state[typ] {
			if !set[name] {
				p.drop(typ, name)
			}
		}
		p.want[typ] = slices.Sorted(maps.Keys(set))
	}
}

// feeds reports whether a response of typ can change subscriptions.
func (p *proxy) feeds(typ string) bool {
	switch typ {
	case resourcev3.ListenerType, resourcev3.ClusterType:
		return true
	case resourcev3.RouteType:
		return p.client == ClientGRPC
	}
	return false
}

// run keeps a stream open until ctx ends.
func (p *proxy) run(ctx context.Context, conn *grpc.ClientConn) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := p.stream(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 5*time.Second {
			backoff = 50 * time.Millisecond
		}
		p.f.noteStreamError(err)
		// Jittered backoff, as proxies do, so reconnects spread out.
		d := backoff/2 + time.Duration(p.f.rand(int64(backoff)))
		if sleep(ctx, d) != nil {
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}

// stream runs one ADS stream until it fails.
func (p *proxy) stream(ctx context.Context, conn *grpc.ClientConn) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	p.answered = map[string]bool{}
	p.streamGen.Add(1)
	if p.delta {
		s, err := client.DeltaAggregatedResources(sctx, grpc.WaitForReady(true))
		if err != nil {
			return fmt.Errorf("open delta stream: %w", err)
		}
		return p.runDelta(s)
	}
	s, err := client.StreamAggregatedResources(sctx, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	return p.runSotw(s)
}

// typeState returns the held resources of typ.
func (p *proxy) typeState(typ string) map[string]held {
	m := p.state[typ]
	if m == nil {
		m = map[string]held{}
		p.state[typ] = m
	}
	return m
}

func (p *proxy) put(typ, name string, h held) {
	p.typeState(typ)[name] = h
	switch typ {
	case resourcev3.EndpointType:
		p.edsBySvc[h.f.service] = h.f
	case resourcev3.ListenerType:
		if h.f.address != "" {
			p.ldsByAddr[h.f.address] = name
		}
	}
}

func (p *proxy) drop(typ, name string) {
	m := p.state[typ]
	h, ok := m[name]
	if !ok {
		return
	}
	delete(m, name)
	switch typ {
	case resourcev3.EndpointType:
		if p.edsBySvc[h.f.service] == h.f {
			delete(p.edsBySvc, h.f.service)
		}
	case resourcev3.ListenerType:
		if p.ldsByAddr[h.f.address] == name {
			delete(p.ldsByAddr, h.f.address)
		}
	}
}

// decodeAll decodes resources; a failure is a NACK.
func (p *proxy) decodeAll(anys []*anypb.Any) ([]*fact, error) {
	out := make([]*fact, 0, len(anys))
	for _, a := range anys {
		f, err := p.f.dec.decode(a)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// --- state of the world ---

func (p *proxy) runSotw(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) error {
	p.sent = map[string][]string{}
	first := true
	send := func(typ string, names []string) error {
		req := &discoveryv3.DiscoveryRequest{
			TypeUrl:       typ,
			ResourceNames: names,
			VersionInfo:   p.version[typ],
			ResponseNonce: p.nonce[typ],
		}
		if first {
			req.Node, first = p.node, false
		}
		p.sent[typ] = names
		return s.Send(req)
	}
	// A new stream starts without nonces; versions say what the proxy has.
	p.nonce = map[string]string{}
	for _, typ := range adsOrder {
		if p.wildcard(typ) {
			if err := send(typ, nil); err != nil {
				return err
			}
			continue
		}
		if names := p.desired(typ); len(names) > 0 {
			if err := send(typ, names); err != nil {
				return err
			}
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		p.responses.Add(1)
		typ := resp.GetTypeUrl()
		p.nonce[typ] = resp.GetNonce()
		p.answered[typ] = true
		facts, err := p.decodeAll(resp.GetResources())
		if err != nil {
			p.nacks.Add(1)
			nack := &discoveryv3.DiscoveryRequest{
				TypeUrl: typ, ResourceNames: p.sent[typ], VersionInfo: p.version[typ],
				ResponseNonce: resp.GetNonce(), ErrorDetail: &status.Status{Code: 3, Message: err.Error()},
			}
			if err := s.Send(nack); err != nil {
				return err
			}
			continue
		}
		// LDS and CDS responses are the full set; EDS and RDS update by name.
		if typ == resourcev3.ListenerType || typ == resourcev3.ClusterType {
			for name := range p.state[typ] {
				p.drop(typ, name)
			}
		}
		for _, f := range facts {
			p.put(typ, f.name, held{f: f})
		}
		p.version[typ] = resp.GetVersionInfo()
		feeds := p.feeds(typ)
		if feeds {
			p.resubscribe()
		}
		// ACK, then ask for what the response made necessary.
		if err := send(typ, p.sent[typ]); err != nil {
			return err
		}
		for _, t := range adsOrder {
			if !feeds || t == typ || p.wildcard(t) {
				continue
			}
			if names := p.desired(t); !slices.Equal(names, p.sent[t]) {
				if err := send(t, names); err != nil {
					return err
				}
			}
		}
		p.f.tr.observe(p, time.Now())
	}
}

// --- delta ---

func (p *proxy) runDelta(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) error {
	if p.client != ClientEnvoy {
		return errors.New("delta xDS is for Envoy-like proxies only (grpc-go speaks SotW)")
	}
	p.sent = map[string][]string{}
	first := true
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		if first {
			req.Node, first = p.node, false
		}
		return s.Send(req)
	}
	// A new stream tells the server what the proxy holds.
	for _, typ := range adsOrder {
		var names []string
		if !p.wildcard(typ) {
			if names = p.desired(typ); len(names) == 0 {
				continue
			}
		}
		versions := map[string]string{}
		for name, h := range p.state[typ] {
			versions[name] = h.version
		}
		p.sent[typ] = names
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: names, InitialResourceVersions: versions}); err != nil {
			return err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		p.responses.Add(1)
		typ := resp.GetTypeUrl()
		p.answered[typ] = true
		anys := make([]*anypb.Any, len(resp.GetResources()))
		for i, r := range resp.GetResources() {
			anys[i] = r.GetResource()
		}
		facts, err := p.decodeAll(anys)
		if err != nil {
			p.nacks.Add(1)
			if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce(),
				ErrorDetail: &status.Status{Code: 3, Message: err.Error()}}); err != nil {
				return err
			}
			continue
		}
		for i, f := range facts {
			p.put(typ, f.name, held{f: f, version: resp.GetResources()[i].GetVersion()})
		}
		for _, name := range resp.GetRemovedResources() {
			p.drop(typ, name)
		}
		feeds := p.feeds(typ)
		if feeds {
			p.resubscribe()
		}
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		for _, t := range adsOrder {
			if !feeds || p.wildcard(t) {
				continue
			}
			names := p.desired(t)
			add, remove := diffNames(p.sent[t], names)
			if len(add) == 0 && len(remove) == 0 {
				continue
			}
			p.sent[t] = names
			if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: remove}); err != nil {
				return err
			}
		}
		p.f.tr.observe(p, time.Now())
	}
}

// diffNames returns what is in next and not in prev, and the reverse; both
// are sorted.
func diffNames(prev, next []string) (add, remove []string) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next) || (i < len(prev) && prev[i] < next[j]):
			remove = append(remove, prev[i])
			i++
		case i == len(prev) || next[j] < prev[i]:
			add = append(add, next[j])
			j++
		default:
			i++
			j++
		}
	}
	return add, remove
}

// --- expectations ---

// subscribedTo reports whether the proxy subscribes to the service.
func (p *proxy) subscribedTo(fqdn string) bool {
	return p.client == ClientEnvoy || p.depSet[fqdn]
}

// complete reports whether the proxy holds full config on its current
// stream: the stream answered the types it must answer, every by-name
// subscription is held, and the endpoints of every service it subscribes to
// are exactly the world's ready ones.
func (p *proxy) complete(want expected) bool {
	for _, typ := range adsOrder {
		if p.wildcard(typ) || !p.delta {
			if (p.wildcard(typ) || len(p.sent[typ]) > 0) && !p.answered[typ] {
				return false
			}
		}
		if p.wildcard(typ) {
			continue
		}
		held := p.state[typ]
		for _, n := range p.desired(typ) {
			if _, ok := held[n]; !ok && (typ != resourcev3.ListenerType || p.client != ClientGRPC) {
				return false
			}
		}
	}
	for fqdn, eps := range want {
		if !p.subscribedTo(fqdn) {
			continue
		}
		f := p.edsBySvc[fqdn]
		if f == nil || len(f.endpoints) != len(eps) {
			return false
		}
		for _, ep := range eps {
			if !f.healthy(ep) {
				return false
			}
		}
	}
	return true
}
