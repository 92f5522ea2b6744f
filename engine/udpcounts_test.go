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

// serveUDP creates ConversationRules of spec and an ExternalConnector name on them, on a
// free port of 127.0.0.1, and starts a real connector process for it once the rules are
// resolved. It returns the port and a reader of the ExternalConnector.
func serveUDP(t *testing.T, name, spec string) (port int, get func() *v1alpha1.ExternalConnector) {
	t.Helper()
	ctx := context.Background()
	ns := namespace(t)
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rules"}}
	if err := yaml.UnmarshalStrict([]byte(spec), &cr.Spec); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	p := int32(port)
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "rules", Port: &p, IP: "127.0.0.1"}}
	if err := k8s.Create(ctx, ec); err != nil {
		t.Fatal(err)
	}
	get = func() *v1alpha1.ExternalConnector {
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
	return port, get
}

// The conversations a connector's pods evicted (capacityPolicy: EvictIdlest), which their
// heartbeats count, reach status.connections.evicted.
func TestStatusCountsEvictedConversations(t *testing.T) {
	port, get := serveUDP(t, "dns", connectortest.OneSlotEvictIdlest)
	connectortest.PingUDPFrom(t, "127.0.0.1", port)
	connectortest.PingUDPFrom(t, "127.0.0.2", port) // takes the one slot
	eventually(t, "status.connections.evicted 1", func() error {
		if c := get().Status.Connections; c.Evicted != 1 || c.Total != 2 {
			return fmt.Errorf("connections %+v, want 2 in all, 1 evicted", c)
		}
		return nil
	})
}

// The UDP datagrams a connector's pods dropped by the per-peer rate limit, which their
// heartbeats count, reach status.datagrams.rateLimited; status.datagrams is omitted while
// none were lost.
func TestStatusCountsRateLimitedDatagrams(t *testing.T) {
	port, get := serveUDP(t, "ntp", connectortest.UDPPing)
	connectortest.PingUDPFrom(t, "127.0.0.1", port)
	eventually(t, "status.connections.total 1", func() error {
		if c := get().Status.Connections; c.Total != 1 {
			return fmt.Errorf("connections %+v, want 1 in all", c)
		}
		return nil
	})
	if d := get().Status.Datagrams; d != nil {
		t.Errorf("status.datagrams %+v before any datagram was lost, want it omitted", *d)
	}
	connectortest.BurstUDPFrom(t, "127.0.0.2", port, 600)
	eventually(t, "status.datagrams.rateLimited", func() error {
		if d := get().Status.Datagrams; d == nil || d.RateLimited == 0 {
			return fmt.Errorf("datagrams %+v, want some rate-limited", d)
		}
		return nil
	})
}
