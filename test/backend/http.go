package backend

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// newHTTPHandler serves:
//
//	GET /              JSON Identity {"pod","namespace","zone","version"}
//	GET /healthz       200 "ok" (also /readyz, /livez)
//	GET /sleep/<dur>   waits for the Go duration (at most 5m), then 200; for preStop hooks
//	GET /status/<code> answers with that status code; for retry and outlier tests
//
// Every response carries the x-sluice-pod, -zone and -version headers.
func newHTTPHandler(id Identity) http.Handler {
	body, _ := json.Marshal(id)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /livez", ok)
	mux.HandleFunc("GET /sleep/{duration}", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.PathValue("duration"))
		if err != nil || d < 0 || d > 5*time.Minute {
			http.Error(w, "bad duration", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		ok(w, r)
	})
	mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "bad status code", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set(HeaderPod, id.Pod)
		h.Set(HeaderZone, id.Zone)
		h.Set(HeaderVersion, id.Version)
		mux.ServeHTTP(w, r)
	})
}
