package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mesh/sluice/xds/drain"
)

// waitDrainedName is the command's name in its usage line.
const waitDrainedName = "agent wait-drained"

const waitDrainedHelp = `Wait until no proxy sends new requests to this pod. Made for a preStop hook:

  lifecycle:
    preStop:
      exec:
        command: ["sluice", "agent", "wait-drained", "--url", "http://sluice-drain.sluice-system.svc:15016"]

It asks the Sluice control plane (GET <url>/drain) to block until the pod is
no longer a ready endpoint in its EndpointSlices and every connected proxy
(Envoy or proxyless gRPC) that routes to it has ACKed endpoints without it
(or with it DRAINING), then exits 0, so the application stops only once
nothing will pick it again. Requests already in flight still finish: stop
the application gracefully after the hook, or add --extra-delay.

It exits 1 if the pod is not drained within --timeout: the kubelet then
stops the container anyway. Keep --timeout plus --extra-delay well below the
pod's terminationGracePeriodSeconds, which bounds the hook and the shutdown
together; past it the kubelet kills the container.

With several control plane replicas every replica must be asked: point
--url at a headless Service (every address a host name resolves to is asked,
see --each-address) or repeat --url.

The pod comes from --namespace and --pod, by default $POD_NAMESPACE and
$POD_NAME (downward API fields metadata.namespace and metadata.name), and
its address from --ip, by default $POD_IP (status.podIP).`

// waitDrainedConfig is what `sluice wait-drained` is asked to do.
type waitDrainedConfig struct {
	urls        []string
	target      drain.Target
	timeout     time.Duration
	extraDelay  time.Duration
	eachAddress bool
}

// waitDrainedDeps are what the command reaches outside itself, replaced in
// tests.
type waitDrainedDeps struct {
	client     *http.Client
	lookupHost func(ctx context.Context, host string) ([]string, error)
	now        func() time.Time
}

func runWaitDrained(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg waitDrainedConfig
	fs := newFlagSet(waitDrainedName, waitDrainedHelp, stdout)
	fs.StringSliceVar(&cfg.urls, "url", splitList(os.Getenv("SLUICE_DRAIN_URL")), "base URL of the control plane's drain endpoint, e.g. http://sluice-drain.sluice-system.svc:15016; repeatable (default $SLUICE_DRAIN_URL)")
	fs.StringVar(&cfg.target.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the pod's namespace (default $POD_NAMESPACE)")
	fs.StringVar(&cfg.target.Pod, "pod", os.Getenv("POD_NAME"), "the pod's name (default $POD_NAME)")
	fs.StringVar(&cfg.target.IP, "ip", os.Getenv("POD_IP"), "the pod's IP address, checked too (default $POD_IP)")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "give up (exit 1) after this long; keep it below terminationGracePeriodSeconds")
	fs.DurationVar(&cfg.extraDelay, "extra-delay", 0, "once drained, wait this much longer (for requests picked just before the change)")
	fs.BoolVar(&cfg.eachAddress, "each-address", true, "ask every address a --url host name resolves to (every replica behind a headless Service)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	deps := waitDrainedDeps{client: &http.Client{}, lookupHost: net.DefaultResolver.LookupHost, now: time.Now}
	msg, err := waitDrained(ctx, cfg, deps)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

func (c *waitDrainedConfig) validate() error {
	var errs []error
	if len(c.urls) == 0 {
		errs = append(errs, errors.New("--url (or $SLUICE_DRAIN_URL) is required"))
	}
	for _, s := range c.urls {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--url %q: want http(s)://host[:port]", s))
		}
	}
	if c.target.Pod == "" && c.target.IP == "" {
		errs = append(errs, errors.New("no pod: set --namespace and --pod (or $POD_NAMESPACE and $POD_NAME from the downward API), or --ip"))
	} else if err := c.target.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s must be positive", c.timeout))
	}
	if c.extraDelay < 0 {
		errs = append(errs, fmt.Errorf("--extra-delay %s must not be negative", c.extraDelay))
	}
	return errors.Join(errs...)
}

// drainEndpoint is one control plane replica to ask.
type drainEndpoint struct {
	url  *url.URL // with drain.Path
	host string   // the Host header: the name the user gave
}

func (e drainEndpoint) String() string {
	if e.url.Host != e.host {
		return e.url.Host + " (" + e.host + ")"
	}
	return e.url.Host
}

// waitDrained asks every endpoint until each says the pod is drained, then
// waits the extra delay. It returns what to print.
func waitDrained(ctx context.Context, cfg waitDrainedConfig, deps waitDrainedDeps) (string, error) {
	start := deps.now()
	waitCtx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	endpoints, err := resolveDrainEndpoints(waitCtx, cfg, deps)
	if err != nil {
		return "", err
	}
	errs := make([]error, len(endpoints))
	results := make([]drain.Status, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() { results[i], errs[i] = askDrained(waitCtx, ep, cfg.target, deps) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("%s not drained after %s: %w", cfg.target, deps.now().Sub(start).Round(time.Millisecond), err)
	}
	clusters := map[string]struct{}{}
	for _, st := range results {
		for _, c := range st.Clusters {
			clusters[c] = struct{}{}
		}
	}
	msg := fmt.Sprintf("%s drained after %s (%d control plane replica(s), %d cluster(s))",
		cfg.target, deps.now().Sub(start).Round(time.Millisecond), len(endpoints), len(clusters))
	if cfg.extraDelay > 0 {
		select {
		case <-time.After(cfg.extraDelay):
		case <-ctx.Done():
			return "", fmt.Errorf("%s drained, interrupted during --extra-delay: %w", cfg.target, ctx.Err())
		}
	}
	return msg, nil
}

// resolveDrainEndpoints turns the URLs into endpoints, one per address of a
// host name with --each-address, retrying lookups until ctx ends.
func resolveDrainEndpoints(ctx context.Context, cfg waitDrainedConfig, deps waitDrainedDeps) ([]drainEndpoint, error) {
	var out []drainEndpoint
	for _, s := range cfg.urls {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("--url %q: %w", s, err)
		}
		if !strings.HasSuffix(u.Path, drain.Path) {
			u.Path = strings.TrimSuffix(u.Path, "/") + drain.Path
		}
		host := u.Hostname()
		if !cfg.eachAddress || net.ParseIP(host) != nil {
			out = append(out, drainEndpoint{url: u, host: u.Host})
			continue
		}
		var addrs []string
		err = retry(ctx, func() error {
			addrs, err = deps.lookupHost(ctx, host)
			if err == nil && len(addrs) == 0 {
				err = fmt.Errorf("no address")
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		for _, a := range addrs {
			au := *u
			au.Host = net.JoinHostPort(a, u.Port())
			if u.Port() == "" {
				au.Host = a
				if strings.Contains(a, ":") {
					au.Host = "[" + a + "]"
				}
			}
			out = append(out, drainEndpoint{url: &au, host: u.Host})
		}
	}
	return out, nil
}

// askDrained asks one replica until it says drained. Unreachable replicas
// and 503s (a replica shutting down) are retried until ctx ends; a 504
// before ctx ends is asked again.
func askDrained(ctx context.Context, ep drainEndpoint, target drain.Target, deps waitDrainedDeps) (drain.Status, error) {
	var last drain.Status
	// answered is the last error that came with an answer (a 504 saying
	// what is pending), more telling than a request cut by the deadline.
	var answered error
	err := retry(ctx, func() error {
		st, err := queryDrain(ctx, ep, target, deps)
		last = st
		if err != nil && (st.Reason != "" || ctx.Err() == nil) {
			answered = err
		}
		return err
	})
	if err == nil {
		return last, nil
	}
	if answered != nil {
		err = answered
	}
	return last, fmt.Errorf("%s: %w", ep, err)
}

// errFinal marks an answer not worth retrying (a 400).
type errFinal struct{ error }

func queryDrain(ctx context.Context, ep drainEndpoint, target drain.Target, deps waitDrainedDeps) (drain.Status, error) {
	u := *ep.url
	q := url.Values{}
	if target.Pod != "" {
		q.Set("namespace", target.Namespace)
		q.Set("pod", target.Pod)
	}
	if target.IP != "" {
		q.Set("ip", target.IP)
	}
	// Ask the server to answer a little before our deadline, so a timeout
	// comes back with what is pending.
	if deadline, ok := ctx.Deadline(); ok {
		q.Set("timeout", max(deadline.Sub(deps.now())-500*time.Millisecond, 100*time.Millisecond).Round(time.Millisecond).String())
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return drain.Status{}, errFinal{err}
	}
	req.Host = ep.host
	resp, err := deps.client.Do(req)
	if err != nil {
		return drain.Status{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return drain.Status{}, fmt.Errorf("reading the answer: %w", err)
	}
	var st drain.Status
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(body, &st); err != nil || !st.Drained {
			return st, errFinal{fmt.Errorf("unexpected answer %s", strings.TrimSpace(string(body)))}
		}
		return st, nil
	case http.StatusGatewayTimeout:
		if err := json.Unmarshal(body, &st); err != nil {
			return st, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return st, errors.New(describePending(st))
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
		return st, errFinal{fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))}
	default:
		return st, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
}

// describePending renders a not-drained status for an error message.
func describePending(st drain.Status) string {
	var b strings.Builder
	b.WriteString(st.Reason)
	for i, p := range st.Pending {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", st.PendingTotal-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// retry calls f until it succeeds, returns an errFinal, or ctx ends, with a
// growing pause between attempts.
func retry(ctx context.Context, f func() error) error {
	pause := 100 * time.Millisecond
	for {
		err := f()
		var final errFinal
		if err == nil || errors.As(err, &final) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		pause = min(2*pause, 2*time.Second)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
