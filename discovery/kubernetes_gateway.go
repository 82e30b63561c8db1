package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// DefaultGatewayPollInterval is how often the Kubernetes source checks
// whether missing Gateway API CRDs have been installed.
const DefaultGatewayPollInterval = 30 * time.Second

// gatewayResource is one Gateway API resource the source watches.
type gatewayResource struct {
	kind, groupVersion, resource string
	informer                     func(gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer
}

var gatewayResources = []gatewayResource{
	{KindHTTPRoute, "gateway.networking.k8s.io/v1", "httproutes", func(f gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Gateway().V1().HTTPRoutes().Informer()
	}},
	{KindGRPCRoute, "gateway.networking.k8s.io/v1", "grpcroutes", func(f gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Gateway().V1().GRPCRoutes().Informer()
	}},
	{KindReferenceGrant, "gateway.networking.k8s.io/v1beta1", "referencegrants", func(f gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Gateway().V1beta1().ReferenceGrants().Informer()
	}},
}

// gatewayWatcher watches the Gateway API resources of KubernetesSource.
// The CRDs are optional: a resource whose CRD is not installed is not
// watched (an informer on it would never sync and keep Sluice unready), and
// is looked for again every poll interval, so installing the CRDs later
// needs no restart.
type gatewayWatcher struct {
	discovery resourceLister
	factory   gatewayinformers.SharedInformerFactory
	handler   func(kind string) cache.ResourceEventHandler
	interval  time.Duration
	log       *slog.Logger
	missing   []gatewayResource
	checked   bool
}

// resourceLister is the part of the discovery client the watcher uses.
type resourceLister interface {
	ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

func newGatewayWatcher(client gatewayclient.Interface, disc resourceLister, resync, interval time.Duration,
	handler func(kind string) cache.ResourceEventHandler, log *slog.Logger) *gatewayWatcher {
	if interval <= 0 {
		interval = DefaultGatewayPollInterval
	}
	return &gatewayWatcher{
		discovery: disc,
		factory:   gatewayinformers.NewSharedInformerFactoryWithOptions(client, resync, gatewayinformers.WithTransform(trimObject)),
		handler:   handler,
		interval:  interval,
		log:       log,
		missing:   slices.Clone(gatewayResources),
	}
}

// start watches the resources that exist now and waits until their
// initial lists are in the store.
func (w *gatewayWatcher) start(ctx context.Context) error {
	synced, err := w.watchAvailable(ctx)
	if err != nil {
		return err
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("kubernetes source: waiting for Gateway API informer caches: %w", context.Cause(ctx))
	}
	return nil
}

// poll looks for missing resources until all are watched or ctx ends.
func (w *gatewayWatcher) poll(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for len(w.missing) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := w.watchAvailable(ctx); err != nil {
			w.log.WarnContext(ctx, "discovery: checking for Gateway API CRDs", "err", err)
		}
	}
}

// watchAvailable starts informers for the missing resources the API server
// now serves and returns their HasSynced functions.
func (w *gatewayWatcher) watchAvailable(ctx context.Context) ([]cache.InformerSynced, error) {
	served := map[string]map[string]bool{}
	var synced []cache.InformerSynced
	var still []gatewayResource
	for _, r := range w.missing {
		names, ok := served[r.groupVersion]
		if !ok {
			list, err := w.discovery.ServerResourcesForGroupVersionWithContext(ctx, r.groupVersion)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, fmt.Errorf("discovering %s: %w", r.groupVersion, err)
			default:
				names = map[string]bool{}
				for _, res := range list.APIResources {
					names[res.Name] = true
				}
			}
			served[r.groupVersion] = names
		}
		if !names[r.resource] {
			still = append(still, r)
			continue
		}
		reg, err := r.informer(w.factory).AddEventHandler(w.handler(r.kind))
		if err != nil {
			return nil, fmt.Errorf("watching %ss: %w", r.kind, err)
		}
		synced = append(synced, reg.HasSynced)
		w.log.InfoContext(ctx, "discovery: watching Gateway API resource", "resource", r.resource+"."+r.groupVersion)
	}
	if len(still) > 0 && (!w.checked || len(still) != len(w.missing)) {
		kinds := make([]string, len(still))
		for i, r := range still {
			kinds[i] = r.resource + "." + r.groupVersion
		}
		w.log.WarnContext(ctx, "discovery: Gateway API CRDs not installed; routes of these kinds are ignored until they are",
			"missing", kinds, "checkEvery", w.interval)
	}
	w.missing, w.checked = still, true
	w.factory.Start(ctx.Done())
	return synced, nil
}
