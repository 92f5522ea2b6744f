# shellcheck shell=bash
# Helpers of test/e2e/e2e.sh: logging, waiting, kubectl, activity queries, interactive
# client sessions and failure diagnostics. Sourced, not run.

# --- logging ------------------------------------------------------------------------------

E2E_T0=${E2E_T0:-$SECONDS}
CURRENT_STEP=""
STEP_T0=$SECONDS
STEP_TIMES=()

log() { printf '%s [%4ss] %s\n' "$(date -u +%H:%M:%S)" $((SECONDS - E2E_T0)) "$*" >&2; }
ok() { log "  ok: $*"; }

# step <title> starts a numbered step; the previous one's duration goes to the summary.
step() {
  end_step
  CURRENT_STEP=$1
  STEP_T0=$SECONDS
  printf '\n' >&2
  log "==== $CURRENT_STEP"
}

end_step() {
  [ -n "$CURRENT_STEP" ] || return 0
  STEP_TIMES+=("$(printf '%5ss  %s' $((SECONDS - STEP_T0)) "$CURRENT_STEP")")
  CURRENT_STEP=""
}

print_timings() {
  end_step
  log "timings:"
  local t
  for t in "${STEP_TIMES[@]}"; do
    printf '    %s\n' "$t" >&2
  done
  printf '    %5ss  total\n' $((SECONDS - E2E_T0)) >&2
}

# fail <message> [details...] ends the test; the EXIT trap prints the diagnostics.
# FAILED tells e2e.sh's EXIT trap that fail() has said why.
FAILED=""
fail() {
  # shellcheck disable=SC2034 # read by e2e.sh
  FAILED=1
  local msg=$1
  shift
  log "FAIL${CURRENT_STEP:+ in \"$CURRENT_STEP\"}: $msg"
  local d
  for d in "$@"; do
    printf '%s\n' "$d" | sed 's/^/    | /' >&2
  done
  exit 1
}

# --- waiting ------------------------------------------------------------------------------

# wait_until <seconds> <what> <command...> polls the command until it succeeds; on timeout it
# fails with the command's last output.
wait_until() {
  local timeout=$1 what=$2 deadline out
  shift 2
  deadline=$((SECONDS + timeout))
  while true; do
    if out=$("$@" 2>&1); then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      fail "timed out after ${timeout}s waiting for $what" "$out"
    fi
    sleep 0.5
  done
}

# --- kubectl and helm ---------------------------------------------------------------------

# k runs the envtest kubectl against the test cluster; kn in the examples' namespace; ks in
# the release namespace.
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG" --request-timeout=30s "$@"; }
kn() { k -n "$NS" "$@"; }
ks() { k -n "$RELEASE_NS" "$@"; }
helm_() { "$HELM" --kubeconfig "$KUBECONFIG" "$@"; }

# jsonpath <kind/name> <jsonpath> prints a field of an object of the examples' namespace.
jsonpath() { kn get "$1" -o "jsonpath=$2"; }

# field_is <kind/name> <jsonpath> <want>, field_gt <kind/name> <jsonpath> <number>: for
# wait_until, which must run the query each time (not a $(...) expanded once).
field_is() {
  local got
  got=$(jsonpath "$1" "$2") || return 1
  [ "$got" = "$3" ] || {
    echo "$1 $2: '$got', want '$3'"
    return 1
  }
}
field_gt() {
  local got
  got=$(jsonpath "$1" "$2") || return 1
  if [ -z "$got" ] || [ "$got" -le "$3" ]; then
    echo "$1 $2: '$got', want more than $3"
    return 1
  fi
}

# event_exists <object name> <reason>: an Event about the object in the examples' namespace.
event_exists() {
  [ -n "$(kn get events --field-selector "involvedObject.name=$1,reason=$2" -o name)" ] || {
    echo "no event $2 about $1"
    return 1
  }
}

# phase_is <connector> <phase> succeeds when the ExternalConnector is in that phase.
phase_is() {
  local got
  got=$(jsonpath "xconn/$1" '{.status.phase}') || return 1
  [ "$got" = "$2" ] || {
    echo "phase of $1: '$got', want $2"
    return 1
  }
}

# condition_is <connector> <type> <status> [reason]
condition_is() {
  local got
  got=$(jsonpath "xconn/$1" "{.status.conditions[?(@.type==\"$2\")].status}/{.status.conditions[?(@.type==\"$2\")].reason}") || return 1
  [ "${got%%/*}" = "$3" ] && { [ -z "${4:-}" ] || [ "${got#*/}" = "$4" ]; } || {
    echo "condition $2 of $1: '$got', want $3${4:+/$4}"
    kn get "xconn/$1" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
    return 1
  }
}

# gone <kubectl get arguments...> succeeds when the get finds nothing.
gone() {
  local out
  out=$(k get "$@" --ignore-not-found -o name 2>&1) || {
    echo "$out"
    return 1
  }
  [ -z "$out" ] || {
    echo "still there: $out"
    return 1
  }
}

# --- activities ---------------------------------------------------------------------------

# acts_json <connector> prints the connector's Activities as one JSON array sorted by time.
acts_json() {
  kn get activities -l "parley.io/connector=$1" -o json | jq -c '.items | sort_by(.time, .metadata.name)'
}

# acts_check <connector> <jq filter over the array> [jq args...] succeeds when the filter is
# true; otherwise prints a summary of the activities (for wait_until's failure message).
acts_check() {
  local name=$1 filter=$2 json
  shift 2
  json=$(acts_json "$name") || return 1
  if jq -e "$@" "$filter" >/dev/null <<<"$json"; then
    return 0
  fi
  echo "activities of $name do not satisfy: $filter"
  jq -r '.[] | "  \(.type) \(.connection.id // "") input=\(.input.text // "" | @json) executed=\(.rules.executed // []) async=\(.rules.async // []) captures=\([.captures[]? | "\(.variable)=\(.value)"]) alert=\(.alert // false) \(.message // "")"' <<<"$json" | tail -n 40
  return 1
}

# jq definitions shared by the activity checks (examples/examples_test.go has the same
# helpers in Go): captured values of a variable in order, alerts by rule, ends by message,
# and whether every conversation that started has ended.
# shellcheck disable=SC2016,SC2034 # jq, not shell; used by e2e.sh
JQ_DEFS='
def captured($v): [.[] | .captures[]? | select(.variable == $v) | .value];
def alerted($r): any(.[]; .type == "Input" and .alert == true and ((.rules.executed // []) | index([$r]) != null));
def executed: [.[] | select(.type == "Input") | .rules.executed // [] | .[]];
def asyncs: [.[] | select(.type == "Async") | .rules.async // [] | .[]];
def ended($m): any(.[]; .type == "Ended" and .message == $m);
def all_ended: ([.[] | select(.type == "Connected") | .connection.id] | unique) as $open
  | ([.[] | select(.type == "Ended" or .type == "Broken" or .type == "TimedOut") | .connection.id] | unique) as $done
  | ($open | length) > 0 and ($open - $done | length) == 0;
'

# --- interactive sessions ------------------------------------------------------------------
# A session runs a client (socat) with its stdin on a FIFO this shell holds open and its
# output in a file, so that a test can send a line once the text it expects has arrived, as
# examples_test.go's terminal does.

declare -A SESSION_PID SESSION_FD SESSION_POS
SESSION_PIDS=()

# session_start <name> <command...>
session_start() {
  local name=$1 fifo=$WORK/$1.in out=$WORK/$1.out fd
  shift
  rm -f "$fifo" "$out"
  mkfifo "$fifo"
  : >"$out"
  "$@" <"$fifo" >"$out" 2>&1 &
  SESSION_PID[$name]=$!
  SESSION_PIDS+=("$!")
  exec {fd}>"$fifo"
  SESSION_FD[$name]=$fd
  SESSION_POS[$name]=0
}

# session_send <name> <line>: writes the line and a newline.
session_send() {
  printf '%s\n' "$2" >&"${SESSION_FD[$1]}" || fail "session $1: cannot send $(printf %q "$2")"
}

# session_output <name> prints what the client printed so far.
session_output() { cat "$WORK/$1.out"; }

# session_expect <name> <text> [seconds]: waits for text after what earlier expects consumed.
session_expect() {
  local name=$1 want=$2 timeout=${3:-30} deadline content rest prefix
  deadline=$((SECONDS + timeout))
  while true; do
    # (the x keeps the trailing newlines that command substitution would strip)
    content=$(cat "$WORK/$name.out" && echo x)
    content=${content%x}
    rest=${content:${SESSION_POS[$name]}}
    if [[ $rest == *"$want"* ]]; then
      prefix=${rest%%"$want"*}
      SESSION_POS[$name]=$((SESSION_POS[$name] + ${#prefix} + ${#want}))
      return 0
    fi
    if ((SECONDS >= deadline)); then
      fail "session $name: no $(printf %q "$want") within ${timeout}s" "output so far: $(printf %q "$content")"
    fi
    sleep 0.1
  done
}

# session_close <name>: closes the client's stdin.
session_close() {
  local fd=${SESSION_FD[$1]:-}
  [ -z "$fd" ] || exec {fd}>&-
  SESSION_FD[$1]=""
}

# session_wait_exit <name> [seconds]: waits for the client to exit on its own (the server
# closed the connection) and fails if it does not, or exits non-zero.
session_wait_exit() {
  local name=$1 timeout=${2:-30} pid=${SESSION_PID[$1]} deadline status=0
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      fail "session $name: the client did not exit within ${timeout}s (the connection is still open)" \
        "output: $(printf %q "$(session_output "$name")")"
    fi
    sleep 0.1
  done
  wait "$pid" || status=$?
  [ "$status" = 0 ] || fail "session $name: the client exited with status $status" "output: $(printf %q "$(session_output "$name")")"
  session_close "$name"
}

# kill_sessions ends every client still running (EXIT trap).
kill_sessions() {
  local pid
  for pid in "${SESSION_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}

# --- clients ----------------------------------------------------------------------------------

# client <command> [args...] runs a client with a time limit, logging the command; its
# combined output goes to stdout and to $WORK/last-client.out.
client() {
  local out status=0
  log "  \$ $*"
  out=$(timeout 60 "$@" </dev/null 2>&1) || status=$?
  printf '%s\n' "$out" >"$WORK/last-client.out"
  if [ "$status" != 0 ]; then
    fail "$1 exited with status $status" "$out"
  fi
  printf '%s\n' "$out"
}

# client_stdin <stdin> <command> [args...]: the same with the given stdin.
client_stdin() {
  local stdin=$1 out status=0
  shift
  log "  \$ $* <<< $(printf %q "$stdin")"
  out=$(timeout 60 "$@" <<<"$stdin" 2>&1) || status=$?
  if [ "$status" != 0 ]; then
    fail "$1 exited with status $status" "$out"
  fi
  printf '%s\n' "$out"
}

# want_contains <what> <output> <text...>
want_contains() {
  local what=$1 got=$2 w
  shift 2
  for w in "$@"; do
    [[ $got == *"$w"* ]] || fail "$what: want $(printf %q "$w") in the output" "$got"
  done
}

# squash prints its argument on one line, runs of blanks and newlines as one space.
squash() { tr -s ' \n' '  ' <<<"$1" | sed 's/ $//'; }

# want_equal <what> <got> <want>
want_equal() {
  [ "$2" = "$3" ] || fail "$1: got $(printf %q "$2"), want $(printf %q "$3")"
}

# --- diagnostics ----------------------------------------------------------------------------

# diagnostics writes what helps to understand a failure into $ARTIFACTS and prints its most
# useful parts: cluster objects, events, the operator's and connectors' logs, the node's
# daemons' logs. Every kubectl call is bounded by its request timeout.
diagnostics() {
  [ -n "${KUBECTL:-}" ] && [ -f "${KUBECONFIG:-}" ] || return 0
  rm -rf "$ARTIFACTS"
  mkdir -p "$ARTIFACTS"
  log "diagnostics (full versions in $ARTIFACTS)"
  _save nodes.txt k get nodes -o wide
  _save parley.txt k get all,parley,secrets,leases -n "$NS" -o wide
  _save release.txt k get all,secrets,serviceaccounts,roles,rolebindings,leases -n "$RELEASE_NS" -o wide
  _save all.txt k get all -A -o wide
  _save events.txt k get events -A --sort-by=.lastTimestamp
  _save describe-xconn.txt kn describe externalconnectors
  _save describe-pods.txt k describe pods -A
  _save activities.txt kn get activities
  _save operator.log ks logs "deploy/$RELEASE" --all-containers --tail=-1
  _save_ok operator-previous.log ks logs "deploy/$RELEASE" --all-containers --previous --tail=-1
  local pod f
  for pod in $(kn get pods -o name 2>/dev/null); do
    _save "connector-${pod#pod/}.log" kn logs "$pod" --all-containers --tail=-1
    _save_ok "connector-${pod#pod/}-previous.log" kn logs "$pod" --all-containers --previous --tail=-1
  done
  _show parley.txt 40
  _show release.txt 20
  _show events.txt 40
  _show describe-xconn.txt 60
  _show operator.log 30
  for f in "$ARTIFACTS"/connector-*.log; do
    [ -s "$f" ] && _show "$(basename "$f")" 15
  done
  if [ -d "${CLUSTER_LOGS:-}" ]; then
    for f in kubelet containerd kube-apiserver kube-controller-manager kube-scheduler etcd; do
      [ -f "$CLUSTER_LOGS/$f.log" ] && tail -n 1000 "$CLUSTER_LOGS/$f.log" >"$ARTIFACTS/$f.log"
    done
    # The node's view, errors only: the control plane's logs are in the artifacts.
    for f in kubelet containerd; do
      [ -f "$ARTIFACTS/$f.log" ] || continue
      echo "---- $f.log (last errors)" >&2
      grep -E '^E[0-9]{4}|level=error' "$ARTIFACTS/$f.log" | tail -n 10 >&2 || true
    done
  fi
}

# _save <file> <command...>: the command's output (or error) into the artifacts; empty
# files (nothing to say, like the log of a container that never restarted) are removed.
_save() {
  local file=$ARTIFACTS/$1
  shift
  "$@" >"$file" 2>&1 || true
  [ -s "$file" ] || rm -f "$file"
}

# _save_ok <file> <command...>: the same, but nothing when the command fails (the previous
# logs of a container that never restarted).
_save_ok() {
  local file=$ARTIFACTS/$1
  shift
  "$@" >"$file" 2>/dev/null || rm -f "$file"
  [ ! -f "$file" ] || [ -s "$file" ] || rm -f "$file"
}

_show() {
  [ -s "$ARTIFACTS/$1" ] || return 0
  echo "---- $1 (last $2 lines)" >&2
  tail -n "$2" "$ARTIFACTS/$1" >&2
}
