package drain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Path is where NewHandler serves drain waits.
const Path = "/drain"

// HandlerOptions configure NewHandler. The zero value is usable.
type HandlerOptions struct {
	// DefaultTimeout applies when a request has no timeout; default 30s.
	DefaultTimeout time.Duration
	// MaxTimeout caps the timeout a request may ask for; default 10 minutes.
	MaxTimeout time.Duration
	// MaxWaits bounds the waits in progress; more are refused with 429.
	// Default 10000.
	MaxWaits int
	Log      *slog.Logger
}

func (o HandlerOptions) withDefaults() HandlerOptions {
	if o.DefaultTimeout <= 0 {
		o.DefaultTimeout = 30 * time.Second
	}
	if o.MaxTimeout <= 0 {
		o.MaxTimeout = 10 * time.Minute
	}
	if o.MaxWaits <= 0 {
		o.MaxWaits = 10000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// NewHandler serves, on Path,
//
//	GET /drain?namespace=<ns>&pod=<name>[&ip=<addr>][&timeout=<duration>]
//	GET /drain?ip=<addr>[&timeout=<duration>]
//
// blocking until the target is drained (200), the timeout passes (504),
// or the tracker stops (503, the control plane is shutting down: ask again
// or ask another replica). The body is the Status as JSON, with what is
// still pending on a 504. A bad query is a 400, too many waits a 429.
// Every other path is a 404.
func NewHandler(t *Tracker, opts HandlerOptions) http.Handler {
	opts = opts.withDefaults()
	slots := make(chan struct{}, opts.MaxWaits)
	mux := http.NewServeMux()
	mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		target, timeout, err := parseQuery(r, opts)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%d drain waits in progress already", opts.MaxWaits))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		st, err := t.Wait(ctx, target)
		code := http.StatusOK
		switch {
		case err == nil:
		case errors.Is(err, ErrStopped):
			code = http.StatusServiceUnavailable
		case r.Context().Err() != nil:
			return // the caller went away
		default:
			code = http.StatusGatewayTimeout
		}
		writeJSON(w, code, st, opts.Log)
	})
	return mux
}

func parseQuery(r *http.Request, opts HandlerOptions) (Target, time.Duration, error) {
	q := r.URL.Query()
	target := Target{Namespace: q.Get("namespace"), Pod: q.Get("pod"), IP: q.Get("ip")}
	if err := target.Validate(); err != nil {
		return Target{}, 0, err
	}
	timeout := opts.DefaultTimeout
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return Target{}, 0, fmt.Errorf("timeout %q: want a positive duration such as 30s", s)
		}
		timeout = min(d, opts.MaxTimeout)
	}
	return target, timeout, nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any, log *slog.Logger) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if _, err := w.Write(append(b, '\n')); err != nil {
		log.Debug("writing drain response", "error", err)
	}
}
