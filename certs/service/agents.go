package service

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// AgentStatus is what the service knows of one agent watching the trust
// bundle on this replica.
type AgentStatus struct {
	// ID is the agent's SPIFFE ID, from its token.
	ID string `json:"id"`
	// Pod is the agent's pod: from its token when the API server says, else
	// as the agent names it.
	Pod  string `json:"pod,omitempty"`
	Peer string `json:"peer"`
	// ConnectedAt is when its stream opened.
	ConnectedAt time.Time `json:"connectedAt"`
	// SentVersion is the last trust bundle version sent to it,
	// AppliedVersion the last it acknowledged (0: none yet).
	SentVersion    uint64    `json:"sentVersion"`
	AppliedVersion uint64    `json:"appliedVersion"`
	AppliedAt      time.Time `json:"appliedAt,omitzero"`
	// Error is why it could not apply the last bundle, if it could not.
	Error string `json:"error,omitempty"`
}

// String names the agent for logs and reports.
func (a AgentStatus) String() string {
	name := a.ID
	if a.Pod != "" {
		name += " pod " + a.Pod
	}
	return fmt.Sprintf("%s (applied version %d)", name, a.AppliedVersion)
}

// Agents are the agents connected to this replica's WatchTrustBundle and
// the trust bundle version each has applied. It is safe for concurrent
// use.
type Agents struct {
	mu      sync.Mutex
	streams map[uint64]*AgentStatus
	nextKey uint64
	changed chan struct{}
}

// NewAgents returns an empty registry, for Options.Agents.
func NewAgents() *Agents {
	return &Agents{streams: map[uint64]*AgentStatus{}, changed: make(chan struct{})}
}

// List returns the connected agents, by ID then pod.
func (a *Agents) List() []AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AgentStatus, 0, len(a.streams))
	for _, s := range a.streams {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(x, y AgentStatus) int {
		return cmp.Or(cmp.Compare(x.ID, y.ID), cmp.Compare(x.Pod, y.Pod), x.ConnectedAt.Compare(y.ConnectedAt))
	})
	return out
}

// Lagging returns the connected agents that have not applied version.
func (a *Agents) Lagging(version uint64) []AgentStatus {
	var out []AgentStatus
	for _, s := range a.List() {
		if s.AppliedVersion != version {
			out = append(out, s)
		}
	}
	return out
}

// Changed returns a channel closed when an agent connects, disconnects or
// applies a bundle.
func (a *Agents) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

func (a *Agents) add(s AgentStatus) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextKey++
	a.streams[a.nextKey] = &s
	a.notifyLocked()
	return a.nextKey
}

// update changes the agent of key with fn; fn says whether to notify.
func (a *Agents) update(key uint64, fn func(*AgentStatus) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.streams[key]; ok && fn(s) {
		a.notifyLocked()
	}
}

func (a *Agents) remove(key uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.streams, key)
	a.notifyLocked()
}

func (a *Agents) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}
