package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-mesh/sluice/certs/ca"
	"github.com/sluice-mesh/sluice/certs/rotation"
)

const caHelp = `Inspect and rotate Sluice's CA.

  sluice ca status [flags]   the rotation phase, the roots and the intermediate
                             with their expiry, the trust bundle version, what
                             each replica reports of its agents
  sluice ca rotate [flags]   ask for a rotation now: of the root (the default)
                             or, with --intermediate, of the intermediate only

Sluice rotates its CA by itself at 80% of the root's or the intermediate's
life. A root rotation adds the new root to the trust bundle, waits until every
connected agent has applied it, signs with the new intermediate, waits the
longest leaf lifetime, then drops the old root: no request fails. An
intermediate rotation keeps the root and takes effect at once.

'rotate' writes a request into the CA's store (the annotation
ca.sluice.dev/rotation-request on the CA Secret, or rotation-request.json in
--ca-dir); the leading replica acts upon it within --ca-reload-interval
(10s). No network endpoint is involved: who may ask is who may patch the CA
Secret (Kubernetes RBAC), and a request survives restarts. With --wait it
follows the rotation until it completes (a root rotation lasts at least the
longest leaf lifetime, 24h by default).`

// caCommandConfig is what `sluice ca` is configured by.
type caCommandConfig struct {
	kubeconfig   string
	namespace    string
	secretName   string
	dir          string
	intermediate bool
	wait         bool
	timeout      time.Duration
	poll         time.Duration
	json         bool
}

func (c *caCommandConfig) addFlags(fs *pflag.FlagSet, rotate bool) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster Sluice runs in (default: in-cluster config, else $KUBECONFIG)")
	fs.StringVar(&c.namespace, "namespace", "sluice-system", "Sluice's namespace, where the CA Secret is")
	fs.StringVar(&c.secretName, "ca-secret", ca.DefaultSecretName, "the Secret holding the CA")
	fs.StringVar(&c.dir, "ca-dir", "", "the CA is in this directory (sluice serve --ca-dir), not in a Secret")
	fs.BoolVar(&c.json, "json", false, "print the status as JSON")
	if rotate {
		fs.BoolVar(&c.intermediate, "intermediate", false, "rotate the intermediate only (the trust bundle does not change)")
		fs.BoolVar(&c.wait, "wait", false, "follow the rotation until it completes")
		fs.DurationVar(&c.timeout, "timeout", time.Hour, "with --wait: give up waiting after this long (the rotation goes on)")
		fs.DurationVar(&c.poll, "poll", 2*time.Second, "with --wait: how often to read the store")
	}
}

func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, "Usage: sluice ca status|rotate [flags]\n\n%s\n", caHelp)
		if len(args) == 0 {
			return fmt.Errorf("%w: sluice ca needs a subcommand: status or rotate", errUsage)
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	if sub != "status" && sub != "rotate" {
		return fmt.Errorf("%w: unknown subcommand %q: want status or rotate", errUsage, sub)
	}
	var cfg caCommandConfig
	fs := newFlagSet("ca "+sub, caHelp, stdout)
	cfg.addFlags(fs, sub == "rotate")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	store, err := cfg.store()
	if err != nil {
		return err
	}
	if sub == "status" {
		st, err := store.LoadState(ctx)
		if err != nil {
			return err
		}
		return printCAStatus(stdout, store, st, time.Now(), cfg.json)
	}
	return rotateCA(ctx, cfg, store, stdout)
}

// store opens the CA's store named by the flags.
func (c caCommandConfig) store() (ca.Store, error) {
	if c.dir != "" {
		return ca.DirStore{Dir: c.dir}, nil
	}
	restConfig, err := loadKubeconfig(c.kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return ca.SecretStore{Client: client, Namespace: c.namespace, Name: c.secretName}, nil
}

// rotateCA writes a rotation request and, with --wait, follows it.
func rotateCA(ctx context.Context, cfg caCommandConfig, store ca.Store, stdout io.Writer) error {
	st, err := store.LoadState(ctx)
	if err != nil {
		return err
	}
	if st.Phase() != ca.PhaseIdle {
		return fmt.Errorf("a %s rotation is in progress (phase %s since %s); see 'sluice ca status'",
			st.Rotation.Kind, st.Phase(), st.Rotation.Since.UTC().Format(time.RFC3339))
	}
	kind := ca.RotateRoot
	if cfg.intermediate {
		kind = ca.RotateIntermediate
	}
	req := rotation.NewRequest(kind, requester(), time.Now())
	if err := store.RequestRotation(ctx, req); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "requested a %s rotation of the CA in %s (request %s)\n", kind, store, req.ID)
	if !cfg.wait {
		fmt.Fprintln(stdout, "the leading replica starts it within its --ca-reload-interval; follow it with 'sluice ca status'")
		return nil
	}
	return waitRotation(ctx, cfg, store, req, stdout)
}

// waitRotation prints the phases of the rotation req asked for until it
// completes, is refused, or --timeout passes.
func waitRotation(ctx context.Context, cfg caCommandConfig, store ca.Store, req ca.RotationRequest, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	tick := time.NewTicker(cfg.poll)
	defer tick.Stop()
	var last ca.Phase
	for {
		st, err := store.LoadState(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			fmt.Fprintf(stdout, "reading the CA: %v (retrying)\n", err)
		case err == nil:
			handled := st.Rotation.HandledRequest == req.ID
			if handled && st.Phase() != last {
				last = st.Phase()
				fmt.Fprintf(stdout, "%s  %s%s\n", time.Now().UTC().Format(time.RFC3339), last, phaseDetail(st))
			}
			if handled && !strings.HasPrefix(st.Rotation.RequestResult, "started") {
				if strings.HasPrefix(st.Rotation.RequestResult, "completed") {
					fmt.Fprintln(stdout, st.Rotation.RequestResult)
					return nil
				}
				return fmt.Errorf("the leader did not rotate: %s", st.Rotation.RequestResult)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the rotation goes on (phase %s) but --timeout %s passed; follow it with 'sluice ca status'", last, cfg.timeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func phaseDetail(st *ca.State) string {
	switch st.Phase() {
	case ca.PhaseWaitBundle, ca.PhaseDropOldRoot:
		return fmt.Sprintf(" (waiting for every agent to apply trust bundle version %d)", st.TrustBundleVersion())
	case ca.PhaseWaitLeaves:
		return " (until " + st.Rotation.LeavesUntil.UTC().Format(time.RFC3339) + ", when the last certificate of the old chain expires)"
	}
	return ""
}

// requester names who asks, for the request's By.
func requester() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "sluice ca rotate (" + name + "@" + host + ")"
}

// caStatus is `sluice ca status --json`.
type caStatus struct {
	Store              string                `json:"store"`
	Phase              ca.Phase              `json:"phase"`
	Rotation           ca.Rotation           `json:"rotation"`
	TrustBundleVersion uint64                `json:"trustBundleVersion"`
	Roots              []ca.CertificateInfo  `json:"roots"`
	Intermediate       ca.CertificateInfo    `json:"intermediate"`
	NextIntermediate   *ca.CertificateInfo   `json:"nextIntermediate,omitempty"`
	RootKey            string                `json:"rootKey"`
	Request            *ca.RotationRequest   `json:"request,omitempty"`
	Replicas           []ca.ReplicaReport    `json:"replicas"`
	LastRotation       *ca.CompletedRotation `json:"lastRotation,omitempty"`
}

func printCAStatus(w io.Writer, store ca.Store, st *ca.State, now time.Time, asJSON bool) error {
	info := st.Material.Info()
	s := caStatus{
		Store: store.String(), Phase: st.Phase(), Rotation: st.Rotation, TrustBundleVersion: st.TrustBundleVersion(),
		Roots: info.Roots, Intermediate: info.Intermediates[0], RootKey: info.RootKey,
		Request: st.Request, Replicas: st.Reports, LastRotation: st.Rotation.Last,
	}
	if st.Next != nil {
		next := ca.Info(st.Next.Signer())
		s.NextIntermediate = &next
	}
	if asJSON {
		out, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CA:\t%s\n", s.Store)
	phase := string(s.Phase)
	if s.Phase != ca.PhaseIdle {
		phase += fmt.Sprintf(" (%s rotation, phase entered %s ago)%s", st.Rotation.Kind, now.Sub(st.Rotation.Since).Round(time.Second), phaseDetail(st))
		if st.Rotation.Reason != "" {
			phase += "; " + st.Rotation.Reason
		}
	}
	fmt.Fprintf(tw, "Phase:\t%s\n", phase)
	fmt.Fprintf(tw, "Trust bundle version:\t%d\n", s.TrustBundleVersion)
	for _, r := range s.Roots {
		fmt.Fprintf(tw, "Root:\t%s\n", certLine(r, now))
	}
	fmt.Fprintf(tw, "Root key:\t%s\n", s.RootKey)
	fmt.Fprintf(tw, "Intermediate:\t%s\n", certLine(s.Intermediate, now))
	if s.NextIntermediate != nil {
		fmt.Fprintf(tw, "Next intermediate:\t%s\n", certLine(*s.NextIntermediate, now))
	}
	for _, r := range s.Replicas {
		fmt.Fprintf(tw, "Replica %s:\tserves version %d to %d agents, %d lagging (reported %s ago)\n",
			r.Replica, r.BundleVersion, r.Agents, r.Lagging, now.Sub(r.At).Round(time.Second))
	}
	if s.Request != nil {
		result := st.Rotation.RequestResult
		if st.Rotation.HandledRequest != s.Request.ID {
			result = "pending"
		}
		fmt.Fprintf(tw, "Last request:\t%s %s rotation by %s at %s: %s\n", s.Request.ID, s.Request.Kind, s.Request.By,
			s.Request.At.UTC().Format(time.RFC3339), result)
	}
	if l := s.LastRotation; l != nil {
		fmt.Fprintf(tw, "Last rotation:\t%s, %s to %s: %s\n", l.Kind, l.Started.UTC().Format(time.RFC3339), l.Finished.UTC().Format(time.RFC3339), l.Reason)
	}
	return tw.Flush()
}

func certLine(c ca.CertificateInfo, now time.Time) string {
	life := c.NotAfter.Sub(c.NotBefore)
	used := 100 * float64(now.Sub(c.NotBefore)) / float64(life)
	return fmt.Sprintf("serial %s, expires %s (%.1f%% of its life used), sha256 %s…", c.Serial, c.NotAfter.Format(time.RFC3339), used, c.SHA256[:16])
}
