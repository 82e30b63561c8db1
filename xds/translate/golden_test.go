package translate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"sigs.k8s.io/yaml"

	"github.com/sluice-mesh/sluice/mesh"
	"github.com/sluice-mesh/sluice/xds/translate"
	"github.com/sluice-mesh/sluice/xds/validate"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the translator's output")

// outputFiles names the golden file of each xDS type.
var outputFiles = []struct {
	file    string
	typeURL string
}{
	{"listeners.yaml", resourcev3.ListenerType},
	{"routes.yaml", resourcev3.RouteType},
	{"clusters.yaml", resourcev3.ClusterType},
	{"endpoints.yaml", resourcev3.EndpointType},
}

const warningsFile = "warnings.yaml"

// TestGolden translates every testdata/in/<case>.yaml and compares the
// result with testdata/out/<case>/*.yaml; -update rewrites them and
// removes outputs no input produces. Every output must pass the deep
// validator (and, for gRPC proxies, grpc-go's rules).
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no golden inputs in testdata/in")
	}
	cases := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		cases[name] = true
		t.Run(name, func(t *testing.T) {
			snap, proxy, opts := loadInput(t, in)
			res := translate.Translate(snap, proxy, opts)

			if err := validate.Resources(res.Resources); err != nil {
				t.Errorf("deep validation failed:\n%v", err)
			}
			if proxy.Kind == mesh.ProxyGRPC {
				if err := validate.GRPCResources(res.Resources); err != nil {
					t.Errorf("grpc-go validation failed:\n%v", err)
				}
			}
			// The fast path gives exactly Translate's endpoints.
			if diff := cmp.Diff(res.Resources[resourcev3.EndpointType], translate.Endpoints(snap, proxy, opts), protocmp.Transform()); diff != "" {
				t.Errorf("Endpoints differs from Translate's EDS (-translate +endpoints):\n%s", diff)
			}

			dir := filepath.Join("testdata", "out", name)
			want := map[string][]byte{warningsFile: warningsYAML(t, res.Warnings)}
			for _, o := range outputFiles {
				want[o.file] = resourcesYAML(t, res.Resources[o.typeURL])
			}
			if *update {
				writeGolden(t, dir, want)
				return
			}
			for file, got := range want {
				exp, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					t.Errorf("%v (run go test ./xds/translate/ -update)", err)
					continue
				}
				if diff := cmp.Diff(string(exp), string(got)); diff != "" {
					t.Errorf("%s/%s differs (-golden +got):\n%s", name, file, diff)
				}
			}
		})
	}
	if *update {
		removeOrphans(t, cases)
	}
}

func writeGolden(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for file, data := range files {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// removeOrphans deletes output directories no input produces.
func removeOrphans(t *testing.T, cases map[string]bool) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("testdata", "out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !cases[e.Name()] {
			if err := os.RemoveAll(filepath.Join("testdata", "out", e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// resourcesYAML renders resources as a YAML list of their protojson forms
// with proto field names, as Envoy's documentation writes them. YAML keys
// are sorted, so the output is deterministic.
func resourcesYAML(t *testing.T, rs []types.Resource) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, r := range rs {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
		if err != nil {
			t.Fatalf("protojson %T: %v", r, err)
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	y, err := yaml.JSONToYAML(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func warningsYAML(t *testing.T, w []string) []byte {
	t.Helper()
	if w == nil {
		w = []string{}
	}
	y, err := yaml.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// goldenInput is the YAML form of a golden case: the mesh model, the proxy
// asking, and the options. Endpoints are listed under their service, keyed
// by service port.
type goldenInput struct {
	Options struct {
		ClusterDomain string `json:"clusterDomain"`
		TrustDomain   string `json:"trustDomain"`
	} `json:"options"`
	Proxy    mesh.Proxy `json:"proxy"`
	Services []struct {
		Namespace  string   `json:"namespace"`
		Name       string   `json:"name"`
		ClusterIPs []string `json:"clusterIPs"`
		TLSMode    string   `json:"tlsMode"`
		Ports      []struct {
			Name     string `json:"name"`
			Port     uint32 `json:"port"`
			Protocol string `json:"protocol"`
		} `json:"ports"`
		LB struct {
			Policy string `json:"policy"`
			Hash   *struct {
				Header   string `json:"header"`
				Cookie   string `json:"cookie"`
				SourceIP bool   `json:"sourceIP"`
			} `json:"hash"`
			LocalityAware bool `json:"localityAware"`
			Outlier       *struct {
				Consecutive5xx     uint32   `json:"consecutive5xx"`
				Interval           duration `json:"interval"`
				BaseEjectionTime   duration `json:"baseEjectionTime"`
				MaxEjectionPercent uint32   `json:"maxEjectionPercent"`
			} `json:"outlier"`
			ConnectTimeout duration `json:"connectTimeout"`
			SlowStart      duration `json:"slowStart"`
		} `json:"lb"`
		Endpoints map[uint32][]struct {
			Address string `json:"address"`
			Port    uint32 `json:"port"`
			Zone    string `json:"zone"`
			Health  string `json:"health"`
			Pod     string `json:"pod"`
			// ServiceAccount is the pod's; empty when unknown.
			ServiceAccount string `json:"serviceAccount"`
		} `json:"endpoints"`
	} `json:"services"`
	// Routes are the merged rules of service ports (Snapshot.Routes). The
	// model's route types are read as they are (keys are their field
	// names in lower camel case: path: {type: Exact, value: /x}, backends:
	// [{port: {namespace, name, port}, weight, invalid}], filters:
	// {requestHeaders: {set, add, remove}, mirror, rewrite}); durations
	// are strings.
	Routes []struct {
		Port  mesh.PortKey `json:"port"`
		Rules []struct {
			Route          string                 `json:"route"`
			Kind           mesh.RouteKind         `json:"kind"`
			RuleIndex      int                    `json:"ruleIndex"`
			Matches        []mesh.RouteMatch      `json:"matches"`
			Backends       []mesh.WeightedBackend `json:"backends"`
			Filters        mesh.RouteFilters      `json:"filters"`
			Timeout        duration               `json:"timeout"`
			BackendTimeout duration               `json:"backendTimeout"`
			Retry          *struct {
				Attempts uint32   `json:"attempts"`
				Codes    []int    `json:"codes"`
				Backoff  duration `json:"backoff"`
			} `json:"retry"`
		} `json:"rules"`
	} `json:"routes"`
}

// duration reads "1.5s" style strings.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func loadInput(t *testing.T, path string) (*mesh.Snapshot, *mesh.Proxy, translate.Options) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var in goldenInput
	if err := yaml.UnmarshalStrict(data, &in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	snap := &mesh.Snapshot{Endpoints: map[mesh.PortKey][]mesh.Endpoint{}}
	for _, s := range in.Services {
		svc := &mesh.Service{Namespace: s.Namespace, Name: s.Name, ClusterIPs: s.ClusterIPs, TLSMode: mesh.TLSMode(s.TLSMode)}
		for _, p := range s.Ports {
			svc.Ports = append(svc.Ports, mesh.Port{Name: p.Name, Port: p.Port, Protocol: mesh.Protocol(p.Protocol)})
		}
		svc.LB = mesh.LoadBalancing{
			Policy:         mesh.LBPolicy(s.LB.Policy),
			LocalityAware:  s.LB.LocalityAware,
			ConnectTimeout: time.Duration(s.LB.ConnectTimeout),
			SlowStart:      time.Duration(s.LB.SlowStart),
		}
		if h := s.LB.Hash; h != nil {
			svc.LB.Hash = &mesh.HashPolicy{Header: h.Header, Cookie: h.Cookie, SourceIP: h.SourceIP}
		}
		if o := s.LB.Outlier; o != nil {
			svc.LB.Outlier = &mesh.OutlierDetection{
				Consecutive5xx:     o.Consecutive5xx,
				Interval:           time.Duration(o.Interval),
				BaseEjectionTime:   time.Duration(o.BaseEjectionTime),
				MaxEjectionPercent: o.MaxEjectionPercent,
			}
		}
		snap.Services = append(snap.Services, svc)
		for port, eps := range s.Endpoints {
			key := mesh.PortKey{Namespace: s.Namespace, Name: s.Name, Port: port}
			for _, e := range eps {
				snap.Endpoints[key] = append(snap.Endpoints[key], mesh.Endpoint{
					Address: e.Address, Port: e.Port, Zone: e.Zone, Health: parseHealth(t, e.Health), Pod: e.Pod, ServiceAccount: e.ServiceAccount,
				})
			}
			sort.SliceStable(snap.Endpoints[key], func(i, j int) bool {
				a, b := snap.Endpoints[key][i], snap.Endpoints[key][j]
				return a.Address < b.Address || (a.Address == b.Address && a.Port < b.Port)
			})
		}
	}
	sort.SliceStable(snap.Services, func(i, j int) bool {
		a, b := snap.Services[i], snap.Services[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	for _, pr := range in.Routes {
		if snap.Routes == nil {
			snap.Routes = map[mesh.PortKey]*mesh.PortRoutes{}
		}
		out := &mesh.PortRoutes{Port: pr.Port}
		for _, r := range pr.Rules {
			rule := mesh.RouteRule{
				Route: r.Route, Kind: r.Kind, RuleIndex: r.RuleIndex,
				Matches: r.Matches, Backends: r.Backends, Filters: r.Filters,
				Timeout: time.Duration(r.Timeout), BackendTimeout: time.Duration(r.BackendTimeout),
			}
			if r.Retry != nil {
				rule.Retry = &mesh.RetryPolicy{Attempts: r.Retry.Attempts, Codes: r.Retry.Codes, Backoff: time.Duration(r.Retry.Backoff)}
			}
			out.Rules = append(out.Rules, rule)
		}
		snap.Routes[pr.Port] = out
	}
	return snap, &in.Proxy, translate.Options{ClusterDomain: in.Options.ClusterDomain, TrustDomain: in.Options.TrustDomain}
}

func parseHealth(t *testing.T, s string) mesh.Health {
	t.Helper()
	switch s {
	case "", "healthy":
		return mesh.Healthy
	case "draining":
		return mesh.Draining
	case "unhealthy":
		return mesh.Unhealthy
	}
	t.Fatalf("unknown health %q", s)
	return mesh.Unhealthy
}

// The validator exempts the translator's InvalidBackendCluster by name.
func TestInvalidBackendClusterName(t *testing.T) {
	if translate.InvalidBackendCluster != validate.InvalidBackendCluster {
		t.Errorf("translate.InvalidBackendCluster %q != validate.InvalidBackendCluster %q", translate.InvalidBackendCluster, validate.InvalidBackendCluster)
	}
}
