package engine_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

// The UDP datagrams a connector's pods dropped by the per-peer rate limit, which their
// heartbeats count, reach status.datagrams.rateLimited; status.datagrams is omitted while
// none were lost.
func TestStatusCountsRateLimitedDatagrams(t *testing.T) {
	ctx := context.Background()
	ns, name := namespace(t), "ntp"
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ping"}}
	if err := yaml.UnmarshalStrict([]byte(connectortest.UDPPing), &cr.Spec); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	p := int32(port)
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "ping", Port: &p, IP: "127.0.0.1"}}
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
	eventually(t, "status.connections.total 1", func() error {
		if c := get().Status.Connections; c.Total != 1 {
			return fmt.Errorf("connections %+v, want 1 in all", c)
		}
		return nil
	})
	if d := get().Status.Datagrams; d != nil {
		t.Errorf("status.datagrams %+v before any datagram was lost, want it omitted", *d)
	}

	// A burst from one source over its address's rate (100/s, bursts of 200).
	burst, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer burst.Close()
	for range 600 {
		_, _ = burst.Write([]byte("PING"))
	}
	eventually(t, "status.datagrams.rateLimited", func() error {
		if d := get().Status.Datagrams; d == nil || d.RateLimited == 0 {
			return fmt.Errorf("datagrams %+v, want some rate-limited", d)
		}
		return nil
	})
}
