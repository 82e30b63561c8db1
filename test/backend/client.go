package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// WhoGRPC calls UnaryCall on cc and returns which backend answered, from
// the response (server_id, hostname) and its header metadata, which must
// agree.
func WhoGRPC(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) (Identity, error) {
	var hdr metadata.MD
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{FillUsername: true}, append(opts, grpc.Header(&hdr))...)
	if err != nil {
		return Identity{}, err
	}
	first := func(k string) string {
		if v := hdr.Get(k); len(v) == 1 {
			return v[0]
		}
		return fmt.Sprintf("<%d values of %s>", len(hdr.Get(k)), k)
	}
	id := Identity{Pod: first(HeaderPod), Zone: first(HeaderZone), Version: first(HeaderVersion)}
	id.Namespace, _, _ = strings.Cut(resp.GetUsername(), "/")
	if resp.GetServerId() != id.Pod || resp.GetHostname() != id.Zone {
		return id, fmt.Errorf("response names pod %q zone %q, its headers %+v", resp.GetServerId(), resp.GetHostname(), id)
	}
	return id, nil
}

// WhoHTTP sends GET / to url (e.g. "http://10.244.1.1:8080/") and returns
// which backend answered.
func WhoHTTP(ctx context.Context, client *http.Client, url string) (Identity, error) {
	var id Identity
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return id, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return id, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return id, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil {
		return id, fmt.Errorf("GET %s: decode: %w", url, err)
	}
	if resp.Header.Get(HeaderPod) != id.Pod {
		return id, fmt.Errorf("GET %s: body names pod %q, header %q", url, id.Pod, resp.Header.Get(HeaderPod))
	}
	return id, nil
}
