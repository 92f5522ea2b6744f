package connector_test

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
)

// BenchmarkSharedCounter: round trips of a rule that increments a counter, kept in a
// connection variable, in the in-process store and in a real redis-server (compare the
// last with `redis-benchmark -t incr -q` against the same server; docs/performance.md).
func BenchmarkSharedCounter(b *testing.B) {
	const sharedRules = `
operation: {port: 1, maxConcurrentConnections: 64}
memory: {shared: [{name: count, type: int, default: "0"}]}
conversation:
  rules: [{id: 1, mode: Sync, regex: "^INC", response: "+OK\n", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}}]`
	const connectionRules = `
operation: {port: 1, maxConcurrentConnections: 64}
memory: {connection: [{name: count, type: int, default: "0"}]}
conversation:
  rules: [{id: 1, mode: Sync, regex: "^INC", response: "+OK\n", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}}]`
	b.Run("connection-variable", func(b *testing.B) { benchCounter(b, connectionRules, nil) })
	b.Run("in-process", func(b *testing.B) { benchCounter(b, sharedRules, sharedmemory.NewMemory()) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b, redistest.Options{})
		b.Logf("redis-server at %s (redis-benchmark -p %d -t incr -q)", srv.Addr(), srv.Port)
		s, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchCounter(b, sharedRules, s)
	})
}

func benchCounter(b *testing.B, rulesYAML string, store sharedmemory.Store) {
	srv := connectortest.Start(b, connectortest.Compile(b, rulesYAML), func(o *connector.Options) { o.SharedMemory = store })
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.DialTimeout("tcp", srv.Addr(), 10*time.Second)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for pb.Next() {
			if _, err := conn.Write([]byte("INC\n")); err != nil {
				b.Error(err)
				return
			}
			if _, err := r.ReadString('\n'); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
