// Package kube is the CLI's access to a cluster (`kubectl parley`): a client from the
// kubeconfig as kubectl finds it, the Activities of a namespace listed and followed, and
// ConversationRules checked by the API server itself.
package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// FieldOwner names the CLI in the server-side dry runs of check.
const FieldOwner = client.FieldOwner("kubectl-parley")

// Flags are kubectl's connection flags that the plugin takes.
type Flags struct {
	Kubeconfig, Context, Namespace string
}

// Client is a cluster client with the namespace the flags or the kubeconfig name.
type Client struct {
	client.WithWatch
	Namespace string
}

// Connect makes a client as kubectl would: --kubeconfig, else $KUBECONFIG, else
// ~/.kube/config; --context; -n, else the context's namespace, else "default".
func Connect(f Flags) (*Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.Context}
	if f.Namespace != "" {
		overrides.Context.Namespace = f.Namespace
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("find the cluster (--kubeconfig, KUBECONFIG or ~/.kube/config): %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	return &Client{WithWatch: c, Namespace: ns}, nil
}

// selector picks the Activities of one connector, or of every connector when it is "".
func selector(connector string) client.MatchingLabels {
	if connector == "" {
		return nil
	}
	return client.MatchingLabels{v1alpha1.LabelConnector: connector}
}

// Activities lists the Activities of connector (every connector: "") in time order, and
// the resourceVersion to follow them from.
func (c *Client) Activities(ctx context.Context, connector string) ([]v1alpha1.Activity, string, error) {
	var list v1alpha1.ActivityList
	if err := c.List(ctx, &list, client.InNamespace(c.Namespace), selector(connector)); err != nil {
		return nil, "", fmt.Errorf("list Activities in %s: %w", c.Namespace, err)
	}
	SortByTime(list.Items)
	return list.Items, list.ResourceVersion, nil
}

// SortByTime orders activities by their time, then by name (the connector's sequence).
func SortByTime(items []v1alpha1.Activity) {
	sort.SliceStable(items, func(i, j int) bool {
		if ti, tj := items[i].Time.Time, items[j].Time.Time; !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return items[i].Name < items[j].Name
	})
}

// Follow calls each for every Activity of connector created after resourceVersion, until
// ctx is done or the watch fails. A watch the server ends is started again from the last
// version seen.
func (c *Client) Follow(ctx context.Context, connector, resourceVersion string, each func(*v1alpha1.Activity)) error {
	for {
		w, err := c.Watch(ctx, &v1alpha1.ActivityList{}, client.InNamespace(c.Namespace), selector(connector),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersion, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch Activities in %s: %w", c.Namespace, err)
		}
		rv, err := drain(ctx, w, each)
		w.Stop()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		if rv != "" {
			resourceVersion = rv
		}
	}
}

// drain passes on added Activities until the watch ends; it returns the last version seen.
func drain(ctx context.Context, w watch.Interface, each func(*v1alpha1.Activity)) (string, error) {
	rv := ""
	for {
		select {
		case <-ctx.Done():
			return rv, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, nil
			}
			switch ev.Type {
			case watch.Error:
				return rv, fmt.Errorf("watch Activities: %w", apierrors.FromObject(ev.Object))
			case watch.Added:
				a, ok := ev.Object.(*v1alpha1.Activity)
				if ok {
					rv = a.ResourceVersion
					each(a)
				}
			case watch.Bookmark:
				if a, ok := ev.Object.(*v1alpha1.Activity); ok {
					rv = a.ResourceVersion
				}
			}
		}
	}
}

// CheckRules asks the API server whether it would accept rules, without changing anything
// (a server-side apply dry run): the CRD's schema and any admission webhook say what they
// refuse. It returns the refusal, each cause with its field, or nil.
func (c *Client) CheckRules(ctx context.Context, rules *v1alpha1.ConversationRules) error {
	obj := rules.DeepCopy()
	obj.APIVersion, obj.Kind = v1alpha1.GroupVersion.String(), "ConversationRules"
	if obj.Namespace == "" {
		obj.Namespace = c.Namespace
	}
	obj.ResourceVersion, obj.ManagedFields, obj.Status = "", nil, v1alpha1.ConversationRulesStatus{}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	delete(u, "status")
	err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u}),
		client.DryRunAll, FieldOwner, client.ForceOwnership)
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) {
		return err
	}
	details := status.Status().Details
	if details == nil || len(details.Causes) == 0 {
		return err
	}
	var b strings.Builder
	b.WriteString(string(status.Status().Reason) + ":")
	for _, cause := range details.Causes {
		fmt.Fprintf(&b, "\n  %s: %s", cause.Field, cause.Message)
	}
	return errors.New(b.String())
}
