// Command scale measures the operator against many objects: it starts a kube-apiserver and
// etcd (envtest; KUBEBUILDER_ASSETS must point at them, see hack/envtest-assets.sh), runs
// the real `parley operator` binary as its own process with the generated ClusterRole,
// creates ConversationRules and ExternalConnectors, and reports how long the operator takes
// to converge and how much memory it holds. With -activities N it also creates N Activities
// for one connector with a maxCount, and times the retention pass.
//
//	go build -o /tmp/parley ./cmd/parley
//	KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go run ./hack/scale -parley /tmp/parley -connectors 500
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func main() {
	parley := flag.String("parley", "parley", "the parley binary to run as the operator")
	connectors := flag.Int("connectors", 500, "ExternalConnectors to create (each with its own ConversationRules)")
	activities := flag.Int("activities", 0, "Activities to create for one connector with maxCount 1000 (0: skip)")
	workers := flag.Int("workers", 16, "concurrent creates")
	operatorArgs := flag.String("operator-args", "", "more flags for the operator, space-separated (e.g. --concurrent=1)")
	flag.Parse()
	if err := run(*parley, strings.Fields(*operatorArgs), *connectors, *activities, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func run(parley string, operatorArgs []string, n, nActivities, workers int) error {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	// envtest's default Service range is a /24: room for a few hundred Services only.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	cfg, err := env.Start()
	defer func() { _ = env.Stop() }() // a failed Start (the CRDs not found) may leave etcd and the API server running
	if err != nil {
		return fmt.Errorf("start envtest (is KUBEBUILDER_ASSETS set? run from the repository root): %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx := context.Background()
	opCfg, err := operatorConfig(ctx, env, c)
	if err != nil {
		return err
	}
	kubeconfig, err := writeKubeconfig(opCfg)
	if err != nil {
		return err
	}
	defer os.Remove(kubeconfig)

	op := exec.Command(parley, append([]string{"operator", "--leader-elect=false", "--metrics-bind-address=0", "--engine-bind-address=0",
		"--webhook-bind-address=0", "--health-probe-bind-address=0", "--zap-log-level=error", "--kubeconfig", kubeconfig}, operatorArgs...)...)
	op.Stdout, op.Stderr = os.Stderr, os.Stderr
	if err := op.Start(); err != nil {
		return err
	}
	defer func() { _ = op.Process.Kill(); _ = op.Wait() }()
	time.Sleep(2 * time.Second)
	idle := rssKiB(op.Process.Pid)
	fmt.Printf("operator idle: %d KiB RSS\n", idle)

	// Convergence is followed by watches opened before the creates: listing 2n objects a few
	// times a second would load the API server whose speed bounds what is measured.
	conv, err := watchConvergence(ctx, cfg, scheme, n)
	if err != nil {
		return err
	}
	start := time.Now()
	err = parallel(n, workers, func(i int) error {
		name := fmt.Sprintf("decoy-%04d", i)
		cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
		cr.Spec.Operation.Port = int32(10000 + i)
		cr.Spec.Conversation.Rules = []v1alpha1.Rule{{ID: 1, Mode: v1alpha1.RuleSync, Regex: "(?i)^PING", Response: "+PONG\r\n"}}
		if err := c.Create(ctx, cr); err != nil {
			return err
		}
		return c.Create(ctx, &v1alpha1.ExternalConnector{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec:       v1alpha1.ExternalConnectorSpec{Rules: name},
		})
	})
	if err != nil {
		return err
	}
	created := time.Since(start)
	peak := int64(0)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Minute)
wait:
	for {
		if rss := rssKiB(op.Process.Pid); rss > peak {
			peak = rss
		}
		select {
		case <-conv.done:
			break wait
		case err := <-conv.failed:
			return err
		case <-timeout:
			return fmt.Errorf("not converged after 10 minutes: %d of %d objects", conv.count(), 2*n)
		case <-tick.C:
		}
	}
	fmt.Printf("%d ConversationRules + %d ExternalConnectors: created in %v, converged in %v (Valid and RulesResolved on all)\n",
		n, n, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	fmt.Printf("operator memory: peak %d KiB, settled %d KiB RSS (idle %d KiB)\n", peak, rssKiB(op.Process.Pid), idle)

	if nActivities > 0 {
		return retention(ctx, c, op.Process.Pid, nActivities, workers)
	}
	return nil
}

// convergence counts ConversationRules with Valid=True and ExternalConnectors with
// RulesResolved=True, from watches.
type convergence struct {
	mu     sync.Mutex
	ready  map[string]bool // kind/name: the condition is True
	n      int
	done   chan struct{}
	failed chan error
}

func (cv *convergence) count() int {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	return len(cv.ready)
}

// watchConvergence watches both kinds in the default namespace until all 2n objects are
// converged (done is closed) or a watch fails (failed).
func watchConvergence(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, n int) (*convergence, error) {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	cv := &convergence{ready: map[string]bool{}, n: 2 * n, done: make(chan struct{}), failed: make(chan error, 2)}
	var once sync.Once
	watchKind := func(list client.ObjectList, kind, condition string) error {
		w, err := wc.Watch(ctx, list, client.InNamespace("default"))
		if err != nil {
			return err
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				var name string
				var conds []metav1.Condition
				switch o := ev.Object.(type) {
				case *v1alpha1.ConversationRules:
					name, conds = o.Name, o.Status.Conditions
				case *v1alpha1.ExternalConnector:
					name, conds = o.Name, o.Status.Conditions
				default:
					continue
				}
				cv.mu.Lock()
				key := kind + "/" + name
				if meta.IsStatusConditionTrue(conds, condition) {
					cv.ready[key] = true
				} else {
					delete(cv.ready, key)
				}
				all := len(cv.ready) == cv.n
				cv.mu.Unlock()
				if all {
					once.Do(func() { close(cv.done) })
				}
			}
			if ctx.Err() == nil {
				cv.failed <- fmt.Errorf("the watch of %s ended", kind)
			}
		}()
		return nil
	}
	if err := watchKind(&v1alpha1.ConversationRulesList{}, "ConversationRules", v1alpha1.ConditionValid); err != nil {
		return nil, err
	}
	if err := watchKind(&v1alpha1.ExternalConnectorList{}, "ExternalConnector", v1alpha1.ConditionRulesResolved); err != nil {
		return nil, err
	}
	return cv, nil
}

// retention creates n Activities for decoy-0000 with maxCount 1000 and times the trim.
func retention(ctx context.Context, c client.Client, pid, n, workers int) error {
	var xc v1alpha1.ExternalConnector
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "decoy-0000"}, &xc); err != nil {
		return err
	}
	keep := int32(1000)
	xc.Spec.Activities.MaxCount = &keep
	if err := c.Update(ctx, &xc); err != nil {
		return err
	}
	start := time.Now()
	err := parallel(n, workers, func(i int) error {
		return c.Create(ctx, &v1alpha1.Activity{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("decoy-0000-scale-%07d", i),
				Labels: map[string]string{v1alpha1.LabelConnector: "decoy-0000"}},
			ActivityRecord: v1alpha1.ActivityRecord{Connector: "decoy-0000", Time: metav1.NowMicro(), Type: v1alpha1.ActivityInput},
		})
	})
	if err != nil {
		return err
	}
	created := time.Since(start)
	fmt.Printf("%d Activities created in %v (%.0f/s)\n", n, created.Round(time.Millisecond), float64(n)/created.Seconds())
	peak := int64(0)
	for {
		if rss := rssKiB(pid); rss > peak {
			peak = rss
		}
		// A one-item page tells the count without listing 100,000 objects each second,
		// which would load the API server the operator is being measured against.
		var list metav1.PartialObjectMetadataList
		list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ActivityList"))
		if err := c.List(ctx, &list, client.InNamespace("default"), client.Limit(1)); err != nil {
			return err
		}
		left := int64(len(list.Items))
		if list.RemainingItemCount != nil {
			left += *list.RemainingItemCount
		}
		if left <= int64(keep) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return fmt.Errorf("retention not done after 30 minutes: %d left", left)
		}
		time.Sleep(time.Second)
	}
	fmt.Printf("retention: trimmed to %d, %v after the last create; operator peak %d KiB RSS, settled %d KiB\n",
		keep, (time.Since(start) - created).Round(time.Millisecond), peak, rssKiB(pid))
	return nil
}

func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// operatorConfig binds the generated ClusterRole to a user and returns its config.
func operatorConfig(ctx context.Context, env *envtest.Environment, c client.Client) (*rest.Config, error) {
	raw, err := os.ReadFile(filepath.Join("config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &role); err != nil {
		return nil, err
	}
	const user = "system:serviceaccount:parley-system:parley-operator"
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "parley-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
	}); err != nil {
		return nil, err
	}
	u, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

func writeKubeconfig(cfg *rest.Config) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["operator"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "operator"}
	kc.CurrentContext = "envtest"
	f, err := os.CreateTemp("", "parley-scale-kubeconfig-*")
	if err != nil {
		return "", err
	}
	f.Close()
	return f.Name(), clientcmd.WriteToFile(*kc, f.Name())
}

func rssKiB(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}
