// Package trustbundle publishes the CA's trust bundle (its roots) to
// workloads: a ConfigMap in every namespace that pods mount and hand to
// `sluice agent --ca-trust-file`, so that an agent started at any time,
// during a root rotation too, can verify the certificate service before it
// sends its token. Running agents do not need it: they follow the bundle
// over WatchTrustBundle.
package trustbundle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sluice-mesh/sluice/certs/ca"
)

// Defaults: the ConfigMap's name and its key holding the PEM roots. The key
// is the CA store's file name, so the mounted file is root.crt as the
// agent's documented --ca-trust-file.
const (
	DefaultName = "sluice-ca-root"
	DefaultKey  = ca.FileRootCert
)

// Metadata Sluice puts on the ConfigMaps it publishes.
const (
	// LabelManagedBy marks them (app.kubernetes.io/managed-by: sluice).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// AnnotationVersion is the trust bundle version they hold (the one
	// agents acknowledge over WatchTrustBundle).
	AnnotationVersion = "ca.sluice.dev/trust-bundle-version"
)

// Leader says whether this replica writes; discovery.Leader is one.
type Leader interface {
	IsLeader() bool
	// Subscribe registers fn to be called when leadership changes.
	Subscribe(fn func(leading bool))
}

// Config configures a Publisher.
type Config struct {
	Client kubernetes.Interface
	// Source is the CA in use (rotation.Machine.Source): its trust bundle
	// is what is published, again whenever it changes.
	Source *ca.Source
	// Leader: only the leader writes; nil means always.
	Leader Leader
	// Name and Key of the ConfigMap; DefaultName and DefaultKey when empty.
	Name, Key string
	// Resync re-checks every namespace this often (repairs ConfigMaps
	// edited or deleted behind Sluice's back are caught at once by the
	// watch; this is a safety net); 10m when zero.
	Resync     time.Duration
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Publisher consumes the CA's trust bundle, Namespaces and the ConfigMaps
// it owns, and produces one ConfigMap per namespace holding the bundle: it
// creates a missing one and updates one whose bundle differs (nothing is
// written when it already matches), skips terminating namespaces, and
// writes only while this replica leads. Other keys of the ConfigMap are
// kept.
//
// Metrics: sluice_ca_trust_bundle_configmap_writes_total{operation},
// sluice_ca_trust_bundle_configmap_errors_total{operation},
// sluice_ca_trust_bundle_configmaps_pending (namespaces queued).
type Publisher struct {
	cfg   Config
	queue workqueue.TypedRateLimitingInterface[string]
	log   *slog.Logger

	writes  *prometheus.CounterVec
	errs    *prometheus.CounterVec
	pending prometheus.GaugeFunc

	mu         sync.Mutex
	namespaces corev1listers.NamespaceLister
	configMaps corev1listers.ConfigMapLister
}

// New returns a Publisher; Run starts it.
func New(cfg Config) (*Publisher, error) {
	if cfg.Client == nil || cfg.Source == nil {
		return nil, errors.New("trust bundle publisher: needs a client and a CA source")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		cfg: cfg,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "trust-bundle"}),
		log: cfg.Log.With("configmap", cfg.Name),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ca_trust_bundle_configmap_writes_total",
			Help: "Trust bundle ConfigMaps written, by operation (create, update).",
		}, []string{"operation"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ca_trust_bundle_configmap_errors_total",
			Help: "Failed writes of trust bundle ConfigMaps, by operation (create, update); each is retried with backoff.",
		}, []string{"operation"}),
	}
	p.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_ca_trust_bundle_configmaps_pending",
		Help: "Namespaces whose trust bundle ConfigMap is queued to be checked or written (retries included).",
	}, func() float64 { return float64(p.queue.Len()) })
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.writes, p.errs, p.pending} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("trust bundle publisher metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Run watches Namespaces, the ConfigMaps named Config.Name (a field
// selector: nothing else is listed, so RBAC can be limited to that name)
// and the CA, and publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	defer p.queue.ShutDown()
	nsFactory := informers.NewSharedInformerFactory(p.cfg.Client, p.cfg.Resync)
	cmFactory := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, p.cfg.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", p.cfg.Name).String()
		}))
	nsInformer := nsFactory.Core().V1().Namespaces()
	cmInformer := cmFactory.Core().V1().ConfigMaps()
	p.mu.Lock()
	p.namespaces, p.configMaps = nsInformer.Lister(), cmInformer.Lister()
	p.mu.Unlock()

	// Handlers only enqueue namespaces; the worker reads the listers.
	if _, err := nsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.enqueueObject(obj) },
		UpdateFunc: func(_, obj any) { p.enqueueObject(obj) },
	}); err != nil {
		return fmt.Errorf("trust bundle publisher: namespace handler: %w", err)
	}
	if _, err := cmInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.enqueueConfigMap(obj) },
		UpdateFunc: func(_, obj any) { p.enqueueConfigMap(obj) },
		DeleteFunc: func(obj any) { p.enqueueConfigMap(obj) },
	}); err != nil {
		return fmt.Errorf("trust bundle publisher: configmap handler: %w", err)
	}
	nsFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	defer nsFactory.Shutdown()
	defer cmFactory.Shutdown()
	for typ, ok := range nsFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("trust bundle publisher: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	for typ, ok := range cmFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("trust bundle publisher: %v cache did not sync: %w", typ, ctx.Err())
		}
	}

	if p.cfg.Leader != nil {
		p.cfg.Leader.Subscribe(func(leading bool) {
			if leading {
				p.enqueueAll()
			}
		})
	}
	go p.watchSource(ctx)
	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
	}()
	for p.processNext(ctx) {
	}
	return nil
}

// watchSource queues every namespace now and whenever the CA changes.
func (p *Publisher) watchSource(ctx context.Context) {
	for {
		changed := p.cfg.Source.Changed()
		p.enqueueAll()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (p *Publisher) enqueueAll() {
	p.mu.Lock()
	lister := p.namespaces
	p.mu.Unlock()
	if lister == nil {
		return
	}
	nss, err := lister.List(labels.Everything())
	if err != nil {
		p.log.Warn("listing namespaces from the cache", "error", err)
		return
	}
	for _, ns := range nss {
		p.queue.Add(ns.Name)
	}
}

func (p *Publisher) enqueueObject(obj any) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		p.queue.Add(ns.Name)
	}
}

func (p *Publisher) enqueueConfigMap(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == p.cfg.Name {
		p.queue.Add(cm.Namespace)
	}
}

func (p *Publisher) processNext(ctx context.Context) bool {
	ns, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(ns)
	if err := p.sync(ctx, ns); err != nil {
		if ctx.Err() != nil {
			return false
		}
		p.log.Warn("publishing the trust bundle failed; retrying", "namespace", ns, "error", err, "retries", p.queue.NumRequeues(ns))
		p.queue.AddRateLimited(ns)
		return true
	}
	p.queue.Forget(ns)
	return true
}

// sync makes namespace ns's ConfigMap hold the current trust bundle.
func (p *Publisher) sync(ctx context.Context, name string) error {
	if p.cfg.Leader != nil && !p.cfg.Leader.IsLeader() {
		return nil // the leader publishes; we are queued again if we win
	}
	ns, err := p.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	cur := p.cfg.Source.Current()
	bundle, version := string(cur.TrustBundlePEM()), strconv.FormatUint(cur.TrustBundleVersion(), 10)

	existing, err := p.configMaps.ConfigMaps(name).Get(p.cfg.Name)
	switch {
	case apierrors.IsNotFound(err):
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: p.cfg.Name, Namespace: name,
				Labels:      map[string]string{LabelManagedBy: "sluice"},
				Annotations: map[string]string{AnnotationVersion: version},
			},
			Data: map[string]string{p.cfg.Key: bundle},
		}
		_, err := p.cfg.Client.CoreV1().ConfigMaps(name).Create(ctx, cm, metav1.CreateOptions{FieldManager: "sluice"})
		return p.done("create", name, version, err)
	case err != nil:
		return err
	}
	if existing.Data[p.cfg.Key] == bundle && existing.Annotations[AnnotationVersion] == version {
		return nil
	}
	cm := existing.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Data[p.cfg.Key] = bundle
	cm.Labels[LabelManagedBy] = "sluice"
	cm.Annotations[AnnotationVersion] = version
	_, err = p.cfg.Client.CoreV1().ConfigMaps(name).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "sluice"})
	return p.done("update", name, version, err)
}

// done records a write's outcome. A namespace that began terminating
// meanwhile is not an error.
func (p *Publisher) done(op, ns, version string, err error) error {
	if err == nil {
		p.writes.WithLabelValues(op).Inc()
		p.log.Info("published the trust bundle", "namespace", ns, "operation", op, "version", version)
		return nil
	}
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) || apierrors.IsNotFound(err) {
		return nil
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		// The cache lagged behind our own write or another writer's: not
		// a failure; retried once the cache has caught up.
		return fmt.Errorf("%s ConfigMap %s/%s (cache behind): %w", op, ns, p.cfg.Name, err)
	}
	p.errs.WithLabelValues(op).Inc()
	return fmt.Errorf("%s ConfigMap %s/%s: %w", op, ns, p.cfg.Name, err)
}
