#!/usr/bin/env bash
# Measures `parley run` against a bare Go server of the same shape (the baseline), in one run:
# persistent TCP round trips, unloaded latency (one connection), connect-per-request, UDP
# request/response and idle connections, with activities on (JSON written to a file) and off
# (-o none: counted, not written). Prints a table of rates, ratios to the baseline, the bytes
# of JSON written per request and the targets of docs/performance.md, with each round's ratio
# and server CPU ratio in its last column (ROUNDS).
#
#   hack/bench.sh                     # persistent, latency, cpr, udp, idle; activities on and off
#   MODES=idle100k,timers ACTIVITIES=on ROUNDS=1 hack/bench.sh   # the scale modes (minutes)
#   GO_BENCH=1 hack/bench.sh          # also the in-process go test benchmarks (allocs/op)
#   MODES=persistent,udp ROUNDS=1 DURATION=3s hack/bench.sh
#   MODES=none RATIOS=1 hack/bench.sh # only the in-process ratios below
#
# Then (RATIOS=1, the default) the in-process ratios of docs/performance.md, from go test
# benchmarks run ROUNDS times in one go (median rate of each, from ns/op): 1000 rules against one
# (BenchmarkTCPRoundTripRules, goal >= 0.8), Delimiter framing against Read
# (BenchmarkTCPRoundTripFraming, >= 0.9), a rule with CEL against one without
# (BenchmarkCELRule, >= 0.75), and the shared counter in the in-process store against a
# connection variable (BenchmarkSharedCounter, reported).
#
# The scale modes are not in "all": idle100k holds IDLE100K_CONNS (100000) connections from
# 127.0.0.1 to .5, then sends PING on each and counts the PONGs, reporting the server's VmRSS;
# timers holds TIMER_CONNS (10000) conversations each with an Async rule pending an hour
# ahead and reports the server's CPU over TIMER_HOLD (10s). The load tool raises
# RLIMIT_NOFILE for itself and the servers it starts when it may (root with
# CAP_SYS_RESOURCE); else raise the hard limit first (ulimit -Hn 110000), as 100,000
# connections need 100,000 descriptors in the server and as many in the tool.
#
# Settings (environment): MODES (all | persistent,latency,cpr,udp,idle,idle100k,timers), ACTIVITIES (on,off),
# DURATION (measured time per run, 5s), WARMUP (1s), ROUNDS (runs per cell, median
# reported; 3), CONNS (persistent connections, 16), CPR_WORKERS (16), UDP_WORKERS (16),
# IDLE_CONNS (10000), IDLE100K_CONNS (100000), TIMER_CONNS (10000), TIMER_HOLD (10s), HOLD (idle hold, 5s), CLOSE (cpr client close: rst | fin), BENCH
# (go test -bench regexp, .), BENCHTIME (go test -benchtime, 2s), REF (build parley and run the go test benchmarks from a commit,
# via git archive into the temporary directory, instead of from the working tree: for a
# tree that others are editing; hack/load is always built from the working tree).
#
# The load generator runs on the same machine as the servers: on a small machine the figures
# are ratios, not capacities. Build artifacts and activity files go to a temporary directory
# that is removed at exit.
set -euo pipefail

cd "$(dirname "$0")/.."

MODES=${MODES:-all}
ACTIVITIES=${ACTIVITIES:-on,off}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
CPR_WORKERS=${CPR_WORKERS:-16}
UDP_WORKERS=${UDP_WORKERS:-16}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE100K_CONNS=${IDLE100K_CONNS:-100000}
TIMER_CONNS=${TIMER_CONNS:-10000}
TIMER_HOLD=${TIMER_HOLD:-10s}
HOLD=${HOLD:-5s}
CLOSE=${CLOSE:-rst}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-2s}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "# machine: nproc=$(nproc) $(go version | cut -d' ' -f3-) kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
go build -o "$tmp/load" ./hack/load
src=.
if [[ -n "${REF:-}" ]]; then
	src="$tmp/src"
	mkdir -p "$src"
	git archive "$REF" | tar -x -C "$src"
	mkdir -p "$src/connector"
	cp connector/bench_test.go "$src/connector/" # the benchmarks, if REF predates them
	echo "# parley built from $(git rev-parse --short "$REF")"
else
	echo "# parley built from the working tree at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
fi
(cd "$src" && go build -o "$tmp/parley" ./cmd/parley)

# Ephemeral ports and TIME_WAIT matter for connect-per-request on loopback.
for k in net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse net.core.somaxconn; do
	printf '# %s = %s\n' "$k" "$(sysctl -n "$k" 2>/dev/null | tr '\t' ' ' || echo '?')"
done
echo "# ulimit -n: soft $(ulimit -Sn) hard $(ulimit -Hn)"
echo

if [[ "$MODES" != none ]]; then
"$tmp/load" compare \
	-parley "$tmp/parley" \
	-rules hack/load/bench-rules.yaml \
	-rules-udp hack/load/bench-rules-udp.yaml \
	-rules-100k hack/load/bench-rules-100k.yaml \
	-rules-timers hack/load/bench-rules-timers.yaml \
	-dir "$tmp" \
	-modes "$MODES" \
	-activities "$ACTIVITIES" \
	-duration "$DURATION" \
	-warmup "$WARMUP" \
	-rounds "$ROUNDS" \
	-conns "$CONNS" \
	-cpr-workers "$CPR_WORKERS" \
	-udp-workers "$UDP_WORKERS" \
	-idle-conns "$IDLE_CONNS" \
	-idle100k-conns "$IDLE100K_CONNS" \
	-timer-conns "$TIMER_CONNS" \
	-timer-hold "$TIMER_HOLD" \
	-hold "$HOLD" \
	-close "$CLOSE"
fi

# ratio NAME GOAL NUMERATOR DENOMINATOR: the median rates of two sub-benchmarks and their ratio.
ratio() {
	awk -v name="$1" -v goal="$2" -v num="$3" -v den="$4" '
		function median(a, n,   i, j, t) {
			for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
			return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
		}
		{ for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") { # as a rate: operations per second
			$i = 1e9 / $i
			sub(/-[0-9]+$/, "", $1)
			if ($1 == num) x[++nx] = $i
			if ($1 == den) y[++ny] = $i
		} }
		END {
			if (!nx || !ny) { printf "%-34s missing\n", name; exit }
			mx = median(x, nx); my = median(y, ny); r = mx / my
			spread = ""; for (i = 1; i <= nx; i++) spread = spread sprintf("%.0f ", x[i])
			printf "%-34s %10.0f/s %10.0f/s  %5.2f  %-12s %s\n", name, mx, my, r,
				goal == "-" ? "reported" : (r >= goal ? "met (>= " goal ")" : "MISSED (>= " goal ")"), "rounds: " spread
		}' "$tmp/gobench.txt"
}

if [[ "${RATIOS:-1}" == 1 ]]; then
	echo
	echo "# go test -run '^\$' -bench 'TCPRoundTripRules|TCPRoundTripFraming|CELRule|SharedCounter' -benchtime $BENCHTIME -count $ROUNDS ./connector"
	(cd "$src" && go test -run '^$' -bench 'TCPRoundTripRules|TCPRoundTripFraming|CELRule|SharedCounter/(connection-variable|in-process)' \
		-benchtime "$BENCHTIME" -count "$ROUNDS" ./connector) >"$tmp/gobench.txt"
	printf '%-34s %12s %12s  %5s  %s\n' "IN-PROCESS RATIO" "MEASURED" "AGAINST" "RATIO" "TARGET"
	ratio "1000 rules / 1 rule" 0.8 BenchmarkTCPRoundTripRules/rules=1000 BenchmarkTCPRoundTripRules/rules=1
	ratio "framing Delimiter / Read" 0.9 BenchmarkTCPRoundTripFraming/delimiter BenchmarkTCPRoundTripFraming/read
	ratio "CEL (when, {{= }}) / none" 0.75 BenchmarkCELRule/cel BenchmarkCELRule/plain
	ratio "shared counter in-process / conn" - BenchmarkSharedCounter/in-process BenchmarkSharedCounter/connection-variable
fi

if [[ "${GO_BENCH:-0}" == 1 ]]; then
	echo
	echo "# go test -run '^\$' -bench '$BENCH' -benchtime $BENCHTIME ./connector"
	(cd "$src" && go test -run '^$' -bench "$BENCH" -benchtime "$BENCHTIME" ./connector)
fi
