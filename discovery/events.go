package discovery

import (
	"context"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// DefaultMaxEventsPerReport caps the Events recorded for one problem report,
// so a broken bulk change does not flood the API server.
const DefaultMaxEventsPerReport = 50

// eventReporter records problems as Warning Events on the objects they name.
// A problem is recorded once when it appears; it is recorded again only if
// it goes away and comes back. The recorder's own spam filter applies too.
type eventReporter struct {
	recorder record.EventRecorder
	max      int
	log      *slog.Logger

	mu      sync.Mutex
	emitted map[problemKey]bool
}

func newEventReporter(recorder record.EventRecorder, maxPerReport int, log *slog.Logger) *eventReporter {
	if maxPerReport <= 0 {
		maxPerReport = DefaultMaxEventsPerReport
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &eventReporter{recorder: recorder, max: maxPerReport, log: log, emitted: map[problemKey]bool{}}
}

// apiVersions are the API versions of the kinds an Event can be recorded on.
var apiVersions = map[string]string{
	KindService:       "v1",
	KindPod:           "v1",
	KindNamespace:     "v1",
	KindNode:          "v1",
	KindEndpointSlice: "discovery.k8s.io/v1",
	KindHTTPRoute:     "gateway.networking.k8s.io/v1",
	KindGRPCRoute:     "gateway.networking.k8s.io/v1",
}

func (r *eventReporter) report(ctx context.Context, problems []Problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	current := make(map[problemKey]bool, len(problems))
	for _, p := range problems {
		current[p.key()] = true
	}
	for k := range r.emitted {
		if !current[k] {
			delete(r.emitted, k)
		}
	}
	recorded, deferred := 0, 0
	for _, p := range problems {
		apiVersion, ok := apiVersions[p.Kind]
		if !ok || r.emitted[p.key()] {
			continue
		}
		if recorded == r.max {
			deferred++
			continue
		}
		ref := &corev1.ObjectReference{
			APIVersion: apiVersion, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, UID: types.UID(p.UID),
		}
		r.recorder.Event(ref, corev1.EventTypeWarning, p.Reason, p.Message)
		r.emitted[p.key()] = true
		recorded++
	}
	if deferred > 0 {
		r.log.WarnContext(ctx, "discovery: too many new problems; Events for the rest are deferred to the next report",
			"recorded", recorded, "deferred", deferred)
	}
}
