//go:build linux

package main

import (
	"net/netip"
	"testing"
)

func TestStore(t *testing.T) {
	s := &store{dir: t.TempDir(), subnet: netip.MustParsePrefix("127.1.0.0/30")}

	a, err := s.allocate("c1/eth0")
	if err != nil || a != netip.MustParseAddr("127.1.0.1") {
		t.Fatalf("allocate c1 = %v, %v; want 127.1.0.1", a, err)
	}
	// A retried ADD gets the same address.
	if again, err := s.allocate("c1/eth0"); err != nil || again != a {
		t.Fatalf("allocate c1 again = %v, %v; want %v", again, err, a)
	}
	b, err := s.allocate("c2/eth0")
	if err != nil || b != netip.MustParseAddr("127.1.0.2") {
		t.Fatalf("allocate c2 = %v, %v; want 127.1.0.2", b, err)
	}
	// A /30 has two usable addresses.
	if _, err := s.allocate("c3/eth0"); err == nil {
		t.Fatal("allocate c3 in a full subnet succeeded")
	}

	if err := s.release("c1/eth0"); err != nil {
		t.Fatal(err)
	}
	// Releasing twice, or what was never allocated, is fine (DEL is idempotent).
	if err := s.release("c1/eth0"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.lookup("c1/eth0"); ok || err != nil {
		t.Fatalf("lookup released c1 = %v, %v", ok, err)
	}
	if got, ok, err := s.lookup("c2/eth0"); !ok || err != nil || got != b {
		t.Fatalf("lookup c2 = %v, %v, %v; want %v", got, ok, err, b)
	}
	if c, err := s.allocate("c3/eth0"); err != nil || c != a {
		t.Fatalf("allocate c3 = %v, %v; want the freed %v", c, err, a)
	}
}

func TestStoreDoesNotReuseAtOnce(t *testing.T) {
	s := &store{dir: t.TempDir(), subnet: netip.MustParsePrefix("127.1.0.0/16")}
	a, _ := s.allocate("c1/eth0")
	if err := s.release("c1/eth0"); err != nil {
		t.Fatal(err)
	}
	if b, err := s.allocate("c2/eth0"); err != nil || b == a {
		t.Fatalf("allocate after release = %v, %v; want an address other than %v", b, err, a)
	}
}
