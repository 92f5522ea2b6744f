package transcript

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Connect makes a client of the cluster as `parley operator` finds it (the --kubeconfig
// flag, $KUBECONFIG, the in-cluster config, ~/.kube/config), and returns the namespace of
// the kubeconfig's current context, as kubectl would use it ("default" when it names none).
func Connect(kubeconfig string) (client.Client, string, error) {
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, "", err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("cluster client: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return c, ns, nil
}
