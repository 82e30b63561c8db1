package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// KubernetesOptions configure a KubernetesSource. Zero values take defaults.
type KubernetesOptions struct {
	// Resync is the informers' resync period; 0 disables resyncs (the store
	// ignores them anyway).
	Resync time.Duration
	// Recorder records problems as Events. Nil: Events are written through
	// the client, as component "sluice".
	Recorder record.EventRecorder
	// MaxEventsPerReport caps Events per problem report
	// (DefaultMaxEventsPerReport).
	MaxEventsPerReport int
	Logger             *slog.Logger
	// Gateway, when set, also watches HTTPRoutes, GRPCRoutes (v1) and
	// ReferenceGrants (v1beta1) whose CRDs are installed, checking for
	// missing ones every GatewayPollInterval (DefaultGatewayPollInterval).
	Gateway             gatewayclient.Interface
	GatewayPollInterval time.Duration
}

// KubernetesSource consumes the Kubernetes API (Services, EndpointSlices,
// Pods, Namespaces, Nodes, and with KubernetesOptions.Gateway HTTPRoutes,
// GRPCRoutes and ReferenceGrants, through shared informers) and produces
// store changes. It is the only part of discovery that talks to the API server:
// its handlers only record objects into the store, which notifies the
// coalescer. It also records problems as Kubernetes Events (it is a
// ProblemReporter).
type KubernetesSource struct {
	store       *Store
	factory     informers.SharedInformerFactory
	regs        []cache.ResourceEventHandlerRegistration
	markSynced  func()
	synced      atomic.Bool
	broadcaster record.EventBroadcaster // nil when a Recorder was given
	client      kubernetes.Interface
	events      *eventReporter
	log         *slog.Logger
	gateway     *gatewayWatcher // nil without a Gateway client
}

// NewKubernetesSource returns a source that fills store from client. Call
// Run to start it.
func NewKubernetesSource(client kubernetes.Interface, store *Store, opts KubernetesOptions) (*KubernetesSource, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &KubernetesSource{
		store:   store,
		client:  client,
		log:     log,
		factory: informers.NewSharedInformerFactoryWithOptions(client, opts.Resync, informers.WithTransform(trimObject)),
	}
	recorder := opts.Recorder
	if recorder == nil {
		s.broadcaster = record.NewBroadcaster()
		recorder = s.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "sluice"})
	}
	s.events = newEventReporter(recorder, opts.MaxEventsPerReport, log)

	watch := []struct {
		kind     string
		informer cache.SharedIndexInformer
	}{
		{KindNamespace, s.factory.Core().V1().Namespaces().Informer()},
		{KindNode, s.factory.Core().V1().Nodes().Informer()},
		{KindPod, s.factory.Core().V1().Pods().Informer()},
		{KindService, s.factory.Core().V1().Services().Informer()},
		{KindEndpointSlice, s.factory.Discovery().V1().EndpointSlices().Informer()},
	}
	for _, w := range watch {
		reg, err := w.informer.AddEventHandler(s.handler(w.kind))
		if err != nil {
			return nil, fmt.Errorf("watching %ss: %w", w.kind, err)
		}
		s.regs = append(s.regs, reg)
	}
	if opts.Gateway != nil {
		s.gateway = newGatewayWatcher(opts.Gateway, client.Discovery(), opts.Resync, opts.GatewayPollInterval, s.handler, log)
	}
	s.markSynced = store.RegisterSource("kubernetes")
	return s, nil
}

// handler records informer events of one kind into the store.
func (s *KubernetesSource) handler(kind string) cache.ResourceEventHandler {
	upsert := func(obj any) {
		if o, ok := obj.(runtime.Object); ok {
			if err := s.store.Upsert(o); err != nil {
				s.log.Error("discovery: recording object", "kind", kind, "err", err)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    upsert,
		UpdateFunc: func(_, obj any) { upsert(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			o, ok := obj.(metav1.Object)
			if !ok {
				return
			}
			if err := s.store.Delete(kind, o.GetNamespace(), o.GetName()); err != nil {
				s.log.Error("discovery: deleting object", "kind", kind, "err", err)
			}
		},
	}
}

// Run starts the informers, waits until their initial lists are in the
// store, marks the source synced, and serves until ctx is done.
func (s *KubernetesSource) Run(ctx context.Context) error {
	if s.broadcaster != nil {
		s.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
		defer s.broadcaster.Shutdown()
	}
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()

	synced := make([]cache.InformerSynced, len(s.regs))
	for i, r := range s.regs {
		synced[i] = r.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kubernetes source: waiting for informer caches: %w", err)
		}
		return fmt.Errorf("kubernetes source: informer caches did not sync")
	}
	if s.gateway != nil {
		defer s.gateway.factory.Shutdown()
		if err := s.gateway.start(ctx); err != nil {
			return err
		}
		go s.gateway.poll(ctx)
	}
	s.synced.Store(true)
	s.markSynced()
	s.log.InfoContext(ctx, "discovery: kubernetes caches synced", "objects", s.store.Counts())
	<-ctx.Done()
	return nil
}

// HasSynced reports whether the initial lists of every kind are in the store.
func (s *KubernetesSource) HasSynced() bool { return s.synced.Load() }

// ReportProblems records each new problem as a Warning Event on the object
// it names (reason = Problem.Reason). It implements ProblemReporter.
func (s *KubernetesSource) ReportProblems(ctx context.Context, problems []Problem) {
	s.events.report(ctx, problems)
}

// trimObject drops what discovery does not use from informer objects before
// they are cached: managed fields everywhere, and all but a pod's labels,
// service account and node, which matter in large clusters.
func trimObject(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{
			TypeMeta: o.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: o.Namespace, UID: o.UID,
				ResourceVersion: o.ResourceVersion, Labels: o.Labels,
			},
			Spec: corev1.PodSpec{NodeName: o.Spec.NodeName, ServiceAccountName: o.Spec.ServiceAccountName},
		}, nil
	case *corev1.Node:
		return &corev1.Node{
			TypeMeta: o.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels,
			},
		}, nil
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

var _ ProblemReporter = (*KubernetesSource)(nil)
