package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/xds/debug"
)

// TestDebugEndpoints wires the server into the debug handler as cmd/ does.
func TestDebugEndpoints(t *testing.T) {
	env := newTestEnv(t, nil, twoServices().snapshot())
	grpcLike(t, env, "grpc-1", map[string]string{MetaNamespace: "default", MetaPodName: "api-1"})
	if err := waitAcked(env, env.srv.Seq()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(debug.NewHandler(debug.Options{
		Gatherer:   env.reg,
		Ready:      env.srv.Ready,
		Proxies:    func() any { return env.srv.Proxies() },
		ConfigDump: env.srv.ConfigDump,
		Sections:   []debug.Section{{Name: "warnings", Data: func() any { return env.srv.Warnings() }}},
	}))
	defer ts.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := get("/debug/proxies")
	var proxies []ProxyStatus
	if code != 200 || json.Unmarshal([]byte(body), &proxies) != nil || len(proxies) != 1 {
		t.Fatalf("/debug/proxies = %d %s", code, body)
	}
	p := proxies[0]
	if p.ID != "grpc-1" || p.Pod != "api-1" || len(p.Types) != 4 || p.Types[1].TypeURL != resourcev3.EndpointType || p.Types[1].AckedVersion == "" || p.Types[1].AckedNonce == "" {
		t.Errorf("proxy = %+v", p)
	}
	if code, body := get("/debug/config_dump?proxy=grpc-1"); code != 200 || !strings.Contains(body, `"name": "api.default:8080"`) && !strings.Contains(body, `"name":"api.default:8080"`) {
		t.Errorf("config_dump = %d %s", code, body)
	}
	if code, _ := get("/debug/config_dump?proxy=nobody"); code != 404 {
		t.Errorf("config_dump of an unknown proxy = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `sluice_xds_connected_proxies{kind="grpc"} 1`) || !strings.Contains(body, "sluice_xds_pushes_total") {
		t.Errorf("/metrics = %d %s", code, body)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
	if code, body := get("/debug/warnings"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("/debug/warnings = %d %s", code, body)
	}
}
