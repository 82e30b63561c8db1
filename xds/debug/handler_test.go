package debug

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var notReady error = errors.New("waiting for the first sync")
	h := NewHandler(Options{
		Gatherer: reg,
		Ready:    func() error { return notReady },
		Proxies:  func() any { return []map[string]string{{"id": "p1"}} },
		ConfigDump: func(id string) ([]byte, error) {
			if id != "p1" {
				return nil, fmt.Errorf("%q: %w", id, fs.ErrNotExist)
			}
			return []byte(`{"id":"p1"}`), nil
		},
		Sections: []Section{{Name: "problems", Help: "what went wrong", Data: func() any { return []string{"bad annotation"} }}},
	})

	tests := []struct {
		path     string
		code     int
		contains string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "waiting for the first sync"},
		{"/metrics", 200, "sluice_test_total 3"},
		{"/debug/", 200, "/debug/problems"},
		{"/debug/proxies", 200, `"id": "p1"`},
		{"/debug/config_dump?proxy=p1", 200, `{"id":"p1"}`},
		{"/debug/config_dump?proxy=nobody", 404, "nobody"},
		{"/debug/config_dump", 400, "missing ?proxy="},
		{"/debug/problems", 200, "bad annotation"},
		{"/debug/nothing", 404, ""},
	}
	for _, tc := range tests {
		code, body := get(t, h, tc.path)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.contains)
		}
	}

	notReady = nil
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz once ready = %d", code)
	}
	h.AddSection(Section{Name: "later", Data: func() any { return map[string]int{"n": 1} }})
	code, body := get(t, h, "/debug/later")
	var v map[string]int
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v["n"] != 1 {
		t.Errorf("/debug/later = %d %q", code, body)
	}
}

func TestHandlerWithoutSources(t *testing.T) {
	h := NewHandler(Options{})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 404, "/debug/proxies": 404, "/debug/config_dump?proxy=x": 404} {
		if code, _ := get(t, h, path); code != want {
			t.Errorf("GET %s = %d, want %d", path, code, want)
		}
	}
}
