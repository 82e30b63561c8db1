package main

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// loadKubeconfig returns the API server config: the given file, else the
// in-cluster config, else $KUBECONFIG.
func loadKubeconfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	} else if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("$KUBECONFIG %s: %w", env, err)
		}
		return cfg, nil
	}
	return nil, errors.New("no cluster to watch: not running in a pod and neither --kubeconfig nor $KUBECONFIG is set (use --config-dir DIR to serve a directory of YAML instead)")
}
