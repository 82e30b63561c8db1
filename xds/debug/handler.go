// Package debug serves Sluice's debug HTTP endpoints: health, readiness,
// Prometheus metrics, the xDS proxies and their configuration, and sections
// other components add. It takes functions, not components, so it depends on
// none of them.
package debug

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options say where each endpoint gets its data. Every field is optional;
// an endpoint without its source answers 404.
type Options struct {
	// Gatherer is served at /metrics.
	Gatherer prometheus.Gatherer
	// Ready is asked by /readyz: nil means ready, an error is the reason
	// why not (503). Without it /readyz always answers 200.
	Ready func() error
	// Proxies returns what /debug/proxies shows, rendered as JSON.
	Proxies func() any
	// ConfigDump returns the JSON served at /debug/config_dump?proxy=<id>;
	// an error wrapping fs.ErrNotExist is a 404.
	ConfigDump func(proxyID string) ([]byte, error)
	// Sections are served at /debug/<name>.
	Sections []Section
	Log      *slog.Logger
}

// Section is a JSON page under /debug/, e.g. "problems": discovery problems
// and translation warnings.
type Section struct {
	Name string
	// Help is one line shown in the /debug/ index.
	Help string
	// Data returns the value rendered as JSON.
	Data func() any
}

// Handler serves the debug endpoints.
type Handler struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	mu       sync.Mutex
	sections map[string]Section
}

// NewHandler returns the handler for opts.
func NewHandler(opts Options) *Handler {
	h := &Handler{opts: opts, log: opts.Log, mux: http.NewServeMux(), sections: map[string]Section{}}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok") })
	h.mux.HandleFunc("GET /readyz", h.readyz)
	if opts.Gatherer != nil {
		h.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slogErrorLog{h.log}}))
	}
	h.mux.HandleFunc("GET /debug/{$}", h.index)
	h.mux.HandleFunc("GET /debug/proxies", h.proxies)
	h.mux.HandleFunc("GET /debug/config_dump", h.configDump)
	h.mux.HandleFunc("GET /debug/{section}", h.section)
	for _, s := range opts.Sections {
		h.AddSection(s)
	}
	return h
}

// AddSection serves s at /debug/<s.Name>, replacing a section of that name.
func (h *Handler) AddSection(s Section) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sections[s.Name] = s
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if h.opts.Ready != nil {
		if err := h.opts.Ready(); err != nil {
			text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	text(w, http.StatusOK, "ok")
}

func (h *Handler) index(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	b.WriteString("/healthz\n/readyz\n")
	if h.opts.Gatherer != nil {
		b.WriteString("/metrics\n")
	}
	if h.opts.Proxies != nil {
		b.WriteString("/debug/proxies             connected xDS proxies and what they ACKed\n")
	}
	if h.opts.ConfigDump != nil {
		b.WriteString("/debug/config_dump?proxy=  resources last sent to a proxy (by node id)\n")
	}
	h.mu.Lock()
	names := make([]string, 0, len(h.sections))
	for n := range h.sections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%-26s %s\n", "/debug/"+n, h.sections[n].Help)
	}
	h.mu.Unlock()
	text(w, http.StatusOK, b.String())
}

func (h *Handler) proxies(w http.ResponseWriter, _ *http.Request) {
	if h.opts.Proxies == nil {
		http.NotFound(w, nil)
		return
	}
	h.json(w, h.opts.Proxies())
}

func (h *Handler) configDump(w http.ResponseWriter, r *http.Request) {
	if h.opts.ConfigDump == nil {
		http.NotFound(w, r)
		return
	}
	id := r.URL.Query().Get("proxy")
	if id == "" {
		text(w, http.StatusBadRequest, "missing ?proxy=<node id>; see /debug/proxies")
		return
	}
	out, err := h.opts.ConfigDump(id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		text(w, http.StatusNotFound, err.Error())
	case err != nil:
		h.log.Error("debug: config dump failed", "proxy", id, "error", err)
		text(w, http.StatusInternalServerError, err.Error())
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}
}

func (h *Handler) section(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	s, ok := h.sections[r.PathValue("section")]
	h.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.json(w, s.Data())
}

func (h *Handler) json(w http.ResponseWriter, v any) {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		h.log.Error("debug: rendering JSON", "error", err)
		text(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(out, '\n'))
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	fmt.Fprint(w, msg)
}

// slogErrorLog adapts slog to promhttp's error logger.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Println(v ...any) { s.l.Error("debug: serving metrics: " + fmt.Sprint(v...)) }
