package service

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// identityLimiter limits requests per identity (namespace/service account).
// All replicas of a Deployment share an identity, so the burst must cover a
// rollout; the limit stops one compromised or looping workload from
// monopolizing the CA.
type identityLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	byID    map[string]*limiterEntry
	lastGC  time.Time
	idleTTL time.Duration
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIdentityLimiter(limit rate.Limit, burst int) *identityLimiter {
	idle := 10 * time.Minute
	if limit > 0 {
		// Forget an identity only once its bucket has surely refilled.
		if refill := time.Duration(float64(burst) / float64(limit) * float64(time.Second)); 2*refill > idle {
			idle = 2 * refill
		}
	}
	return &identityLimiter{limit: limit, burst: burst, byID: map[string]*limiterEntry{}, idleTTL: idle}
}

// allow takes one token of key's bucket at now.
func (l *identityLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastGC) > l.idleTTL {
		// Identities idle this long have full buckets again: forget them.
		for k, e := range l.byID {
			if now.Sub(e.seen) > l.idleTTL {
				delete(l.byID, k)
			}
		}
		l.lastGC = now
	}
	e, ok := l.byID[key]
	if !ok {
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.byID[key] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}
