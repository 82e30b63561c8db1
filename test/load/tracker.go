package load

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// expectation is one change as proxies should see it: which proxies
// subscribe to it, and a test of a proxy's state that becomes true once the
// proxy has applied (and ACKed) a response carrying it.
type expectation struct {
	name       string
	subscribed func(p *proxy) bool
	check      func(p *proxy) bool

	// start is when the write returned (unix ns); latencies count from it.
	start atomic.Int64
	// done[i] is when proxy i satisfied the check (unix ns), 0 before.
	done      []atomic.Int64
	want      int
	remaining atomic.Int64
	last      atomic.Int64
	allDone   chan struct{}
}

// tracker holds the expectations proxies check after each response.
type tracker struct {
	mu      sync.Mutex
	active  atomic.Pointer[[]*expectation]
	proxies []*proxy
}

func newTracker() *tracker {
	t := &tracker{}
	t.active.Store(&[]*expectation{})
	return t
}

// add registers an expectation, before the write that should satisfy it.
// It reports false when no proxy subscribes to it.
func (t *tracker) add(e *expectation) bool {
	e.done = make([]atomic.Int64, len(t.proxies))
	e.allDone = make(chan struct{})
	for _, p := range t.proxies {
		if e.subscribed(p) {
			e.want++
		}
	}
	if e.want == 0 {
		return false
	}
	e.remaining.Store(int64(e.want))
	t.mu.Lock()
	defer t.mu.Unlock()
	list := append(slices.Clone(*t.active.Load()), e)
	t.active.Store(&list)
	return true
}

// remove stops checking e.
func (t *tracker) remove(e *expectation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := slices.DeleteFunc(slices.Clone(*t.active.Load()), func(x *expectation) bool { return x == e })
	t.active.Store(&list)
}

// observe checks the active expectations against p's state; called by p's
// goroutine after it ACKed a response at now.
func (t *tracker) observe(p *proxy, now time.Time) {
	for _, e := range *t.active.Load() {
		if e.done[p.idx].Load() != 0 || !e.subscribed(p) || !e.check(p) {
			continue
		}
		ns := now.UnixNano()
		e.done[p.idx].Store(ns)
		for {
			last := e.last.Load()
			if ns <= last || e.last.CompareAndSwap(last, ns) {
				break
			}
		}
		if e.remaining.Add(-1) == 0 {
			close(e.allDone)
		}
	}
}

// wait waits until every subscribed proxy satisfied e, or the timeout.
func (e *expectation) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.allDone:
		return nil
	case <-t.C:
		return fmt.Errorf("%s: %d of %d proxies did not get it within %s", e.name, e.remaining.Load(), e.want, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// latency is from the write to the last proxy's ACK (0 if it came first).
func (e *expectation) latency() time.Duration {
	return max(time.Duration(e.last.Load()-e.start.Load()), 0)
}
