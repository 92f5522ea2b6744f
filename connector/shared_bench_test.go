package connector_test

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
)

// BenchmarkSharedCounter: round trips of a rule that increments a counter, kept in a
// connection variable, in the in-process store and in a real redis-server. The redis case
// also runs `redis-benchmark -t incr -q -c 8` against the same server, after the
// connector's run, and reports its rate and the connector's share of it
// (docs/performance.md; the goal is a share of at least 0.3).
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
		if incr := redisBenchmarkIncr(b, srv.Port); incr > 0 {
			b.ReportMetric(incr, "redis-incr/s")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/incr, "share")
		}
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

// redisBenchmarkIncr runs redis-benchmark's INCR test with 8 clients against port and
// returns its requests per second, or 0 (logged) when redis-benchmark is not installed
// (Debian package redis-tools).
func redisBenchmarkIncr(b *testing.B, port int) float64 {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		b.Log("redis-benchmark not installed (Debian package redis-tools): no comparison")
		return 0
	}
	out, err := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "incr", "-q", "-c", "8", "-n", "100000").Output()
	if err != nil {
		b.Fatalf("redis-benchmark: %v", err)
	}
	// "INCR: 81234.56 requests per second, p50=0.055 msec", after progress lines ending in \r.
	m := regexp.MustCompile(`INCR: ([0-9.]+) requests per second`).FindAllSubmatch(out, -1)
	if len(m) == 0 {
		b.Fatalf("redis-benchmark said: %q", out)
	}
	rate, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("redis-benchmark -t incr -q -c 8 -n 100000: %.0f requests per second", rate)
	return rate
}
