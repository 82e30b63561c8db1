package ca

import (
	"sync"
	"sync/atomic"
)

// Source holds the CA in use. A rotation replaces it (Set); the certificate
// service reads it for every request (Current) and watches it (Changed) to
// push new trust bundles to agents. It is safe for concurrent use.
type Source struct {
	cur atomic.Pointer[CA]

	mu      sync.Mutex
	changed chan struct{}
}

// NewSource returns a Source holding c.
func NewSource(c *CA) *Source {
	s := &Source{changed: make(chan struct{})}
	s.cur.Store(c)
	return s
}

// Current is the CA in use.
func (s *Source) Current() *CA { return s.cur.Load() }

// Changed returns a channel closed by the next Set. Take it before reading
// Current so that no change is missed.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Set makes c the CA in use and wakes those waiting on Changed.
func (s *Source) Set(c *CA) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Store(c)
	close(s.changed)
	s.changed = make(chan struct{})
}
