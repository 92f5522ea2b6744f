package engine_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

// The conversations a connector's pods evicted (capacityPolicy: EvictIdlest), which their
// heartbeats count, reach status.connections.evicted.
func TestStatusCountsEvictedConversations(t *testing.T) {
	ctx := context.Background()
	ns, name := namespace(t), "dns"
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "slot"}}
	if err := yaml.UnmarshalStrict([]byte(connectortest.OneSlotEvictIdlest), &cr.Spec); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	p := int32(port)
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "slot", Port: &p, IP: "127.0.0.1"}}
	if err := k8s.Create(ctx, ec); err != nil {
		t.Fatal(err)
	}
	get := func() *v1alpha1.ExternalConnector {
		var got v1alpha1.ExternalConnector
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ec), &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	eventually(t, "rules resolved", func() error {
		if get().Status.Rules == nil {
			return fmt.Errorf("status.rules unset")
		}
		return nil
	})
	startConnector(t, ns, name, mainEngine.Address(), secretFiles(t, ns, name))
	connectortest.PingUDPFrom(t, "127.0.0.1", port)
	connectortest.PingUDPFrom(t, "127.0.0.2", port) // takes the one slot
	eventually(t, "status.connections.evicted 1", func() error {
		if c := get().Status.Connections; c.Evicted != 1 || c.Total != 2 {
			return fmt.Errorf("connections %+v, want 2 in all, 1 evicted", c)
		}
		return nil
	})
}
