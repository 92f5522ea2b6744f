package controllers_test

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
)

func createActivity(t *testing.T, ns, connector string, seq int) {
	t.Helper()
	a := &v1alpha1.Activity{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-run1-%06d", connector, seq),
			Labels: map[string]string{v1alpha1.LabelConnector: connector},
		},
		ActivityRecord: v1alpha1.ActivityRecord{Connector: connector, Time: metav1.NowMicro(), Type: v1alpha1.ActivityInput},
	}
	if err := k8s.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

func activityNames(t *testing.T, ns, connector string) []string {
	t.Helper()
	var list v1alpha1.ActivityList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelConnector: connector}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list.Items {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	return names
}

func connectorWithRetention(t *testing.T, ns, name string, maxCount *int32, ttl time.Duration) {
	t.Helper()
	xc := &v1alpha1.ExternalConnector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ExternalConnectorSpec{Rules: "absent", Activities: v1alpha1.ActivityPolicy{MaxCount: maxCount}},
	}
	if ttl > 0 {
		xc.Spec.Activities.TTL = &metav1.Duration{Duration: ttl}
	}
	if err := k8s.Create(context.Background(), xc); err != nil {
		t.Fatal(err)
	}
}

func TestRetentionByCountKeepsTheNewest(t *testing.T) {
	ns := namespace(t)
	three := int32(3)
	connectorWithRetention(t, ns, "capped", &three, 0)
	for i := 1; i <= 8; i++ {
		createActivity(t, ns, "capped", i)
		createActivity(t, ns, "other", i) // another connector's are not touched
	}
	eventually(t, "only the 3 newest left", func() error {
		if got := activityNames(t, ns, "capped"); fmt.Sprint(got) != "[capped-run1-000006 capped-run1-000007 capped-run1-000008]" {
			return fmt.Errorf("left: %v", got)
		}
		return nil
	})
	if got := activityNames(t, ns, "other"); len(got) != 8 {
		t.Errorf("another connector's activities: %v", got)
	}
}

func TestRetentionByAge(t *testing.T) {
	ns := namespace(t)
	// A ttl long enough that a loaded machine's polls still see activity 3 alone before it
	// expires in its turn.
	connectorWithRetention(t, ns, "aging", nil, 5*time.Second)
	createActivity(t, ns, "aging", 1)
	createActivity(t, ns, "aging", 2)
	time.Sleep(5500 * time.Millisecond)
	createActivity(t, ns, "aging", 3)
	eventually(t, "the old ones expire", func() error {
		if got := activityNames(t, ns, "aging"); fmt.Sprint(got) != "[aging-run1-000003]" {
			return fmt.Errorf("left: %v", got)
		}
		return nil
	})
	eventually(t, "the young one expires in its turn", func() error {
		if got := activityNames(t, ns, "aging"); len(got) != 0 {
			return fmt.Errorf("left: %v", got)
		}
		return nil
	})
}

// The Activities a deleted connector kept (keepOnDelete) expire after the operator's default
// ttl; a connector's own are capped by the default maxCount when its spec sets none. The
// suite's reconcilers have no defaults: this test runs a retention controller of its own,
// whose clock it moves.
func TestRetentionDefaultsAndKeptActivities(t *testing.T) {
	ns := namespace(t)
	var ahead atomic.Int64 // how far the controller's clock is ahead
	startRetention(t, controllers.Retention{MaxCount: 3, TTL: 30 * time.Minute},
		func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) })

	for i := 1; i <= 4; i++ {
		createActivity(t, ns, "gone", i) // no such connector: it was deleted, these were kept
	}
	connectorWithRetention(t, ns, "live", nil, 0)
	for i := 1; i <= 5; i++ {
		createActivity(t, ns, "live", i)
	}
	eventually(t, "the default maxCount keeps live's 3 newest", func() error {
		if got := activityNames(t, ns, "live"); fmt.Sprint(got) != "[live-run1-000003 live-run1-000004 live-run1-000005]" {
			return fmt.Errorf("left: %v", got)
		}
		return nil
	})
	if got := activityNames(t, ns, "gone"); len(got) != 4 {
		t.Fatalf("kept Activities younger than the default ttl were deleted: %v", got)
	}

	ahead.Store(int64(time.Hour))
	createActivity(t, ns, "gone", 5) // wakes the controller up for gone
	createActivity(t, ns, "live", 6)
	eventually(t, "past the default ttl, both expire", func() error {
		if got := append(activityNames(t, ns, "gone"), activityNames(t, ns, "live")...); len(got) != 0 {
			return fmt.Errorf("left: %v", got)
		}
		return nil
	})
}

// startRetention runs a retention controller with defaults and clock now in a manager of its
// own until the test ends.
func startRetention(t *testing.T, defaults controllers.Retention, now func() time.Time) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, Cache: controllers.CacheOptions(),
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.RetentionReconciler{Client: mgr.GetClient(), Defaults: defaults, Now: now}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}
