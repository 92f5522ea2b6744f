#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for end-to-end tests and demos:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd with runc, and a
# kubelet, all started by this script as plain processes (no systemd, no Docker, no images to
# pull), all listening on loopback only.
#
#   hack/cluster.sh up           # start it (again: a no-op when it is up); waits for a Ready node
#   hack/cluster.sh down         # stop it and remove everything it made (also after a failed up)
#   hack/cluster.sh status       # what runs; exits 0 only when everything does
#   hack/cluster.sh kubeconfig   # prints the admin kubeconfig's path
#   hack/cluster.sh env          # prints KUBECONFIG and the apiserver address as shell exports
#   hack/cluster.sh import TAR.. # loads docker-archive images (hack/image.sh) into containerd
#
# Needs root, Linux with cgroups (tested with v1; v2 is handled too), Go, and the Debian or
# Ubuntu packages containerd, runc, containernetworking-plugins and iptables (and openssl,
# iproute2). The Kubernetes binaries are built from the Go module proxy by
# `hack/envtest-assets.sh cluster` (cached; the first time takes several minutes).
#
# Networking: pods get their own network namespace with only a loopback address (127.1.x.y,
# from the parley-loopback CNI plugin in hack/cni) and no link to anything, so Services get
# no endpoints and httpGet/tcpSocket probes hit the host's loopback, not the pod. hostNetwork
# pods work fully; inside them the apiserver is at 127.0.0.1:16443 (set
# KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT so: the kubernetes Service's IP routes
# nowhere, there is no kube-proxy). kubectl logs, exec and port-forward work.
#
# Everything (certificates, kubeconfigs, configuration, data, logs, pid files) lives in the
# state directory, ${PARLEY_CLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/cluster}; its
# logs/ holds one log per daemon and survives `down`. Outside it the cluster makes only a
# blackhole route for the service CIDR, kubepods cgroups, the kubelet's iptables chains, the
# shims' sockets in /run/containerd/s, and a few files at paths the kubelet and libcni fix
# (/var/lib/kubelet/device-plugins, /var/log/containers, /var/lib/cni/results); `down`
# removes them all.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
GO=${GO:-go}

state=${PARLEY_CLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/cluster}
# Fixed loopback ports, away from the defaults (2379, 6443, 10250, ...) of any other cluster
# on the machine and from the random ports envtest picks.
ETCD_PORT=16379
ETCD_PEER_PORT=16380
APISERVER_PORT=16443
CONTROLLER_MANAGER_PORT=16257
SCHEDULER_PORT=16259
KUBELET_PORT=16250
KUBELET_HEALTHZ_PORT=16248
# Nothing routes Service IPs (there is no kube-proxy): a blackhole route makes connections to
# them fail at once instead of leaving through the default route.
SERVICE_CIDR=${PARLEY_CLUSTER_SERVICE_CIDR:-10.96.0.0/16}
POD_SUBNET=127.1.0.0/16
NODE_NAME=localhost
PAUSE_IMAGE=registry.k8s.io/pause:3.10
# Daemons in start order; down stops them in reverse, the node's before the control plane's.
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet)

pki=$state/pki
etc=$state/etc
run=$state/run
logs=$state/logs
sock=$run/containerd.sock
kubeconfig=$state/kubeconfig

log() { echo "cluster: $*" >&2; }
die() {
  echo "cluster: $*" >&2
  exit 1
}

usage() {
  sed -n '/^#   hack/s/^#   //p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# --- processes -------------------------------------------------------------------------

# pid_of <daemon> prints the daemon's pid if it runs. A pid counts only if its command line
# names the state directory (all of ours do), so a stale pid file never leads to killing an
# unrelated process that reused the pid; zombies count as not running.
pid_of() {
  local pid
  pid=$(cat "$run/$1.pid" 2>/dev/null) || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$state/" || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

# start <daemon> <command...> runs the daemon in its own session (so that a Ctrl-C of whoever
# ran `up` does not reach it), in the state directory, logging to logs/<daemon>.log. It must
# not inherit fd 9, the lock of up and down, or it would hold it for as long as it runs.
start() {
  local name=$1
  shift
  log "starting $name"
  (cd "$state" && exec setsid "$@" >"$logs/$name.log" 2>&1 </dev/null 9>&-) &
  echo $! >"$run/$name.pid"
}

# stop <daemon> [seconds] sends SIGTERM, and SIGKILL if it has not exited after the grace time.
stop() {
  local name=$1 grace=${2:-10} pid i
  if pid=$(pid_of "$name"); then
    log "stopping $name"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      pid_of "$name" >/dev/null || break
      sleep 0.1
    done
    if pid_of "$name" >/dev/null; then
      log "$name did not stop in ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        pid_of "$name" >/dev/null || break
        sleep 0.1
      done
    fi
  fi
  rm -f "$run/$name.pid"
}

# show_log <daemon> prints the end of the daemon's log, for failures.
show_log() {
  [ -s "$logs/$1.log" ] || return 0
  echo "---- last lines of $logs/$1.log" >&2
  tail -n 25 "$logs/$1.log" >&2
  echo "----" >&2
}

# wait_for <what> <seconds> <daemon> <command...> polls the command until it succeeds. It fails
# with the end of the daemon's log when the daemon dies or time runs out.
wait_for() {
  local what=$1 timeout=$2 daemon=$3 deadline
  shift 3
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$daemon" >/dev/null; then
      show_log "$daemon"
      die "$daemon exited while waiting for $what"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$daemon"
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.2
  done
}

# The script's own kubectl keeps its discovery cache in the state directory, not in ~/.kube.
kubectl() { "$assets/kubectl" --kubeconfig "$kubeconfig" --cache-dir "$state/kubectl-cache" --request-timeout=5s "$@"; }
ctr_() { ctr --address "$sock" --connect-timeout 5s "$@"; }

# --- preflight -------------------------------------------------------------------------

# prerequisites checks what the cluster needs from the machine.
prerequisites() {
  [ "$(id -u)" = 0 ] || die "must run as root (the kubelet and containerd manage mounts, namespaces and cgroups)"
  local missing=() cmd
  for cmd in containerd containerd-shim-runc-v2 ctr runc iptables openssl ip ss setsid mount umount "$GO"; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
  done
  cni_loopback=$(find_cni_loopback) || missing+=("the CNI loopback plugin")
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing ${missing[*]}. On Debian or Ubuntu:
  apt-get install containerd runc containernetworking-plugins iptables openssl iproute2"
  fi
  [ -n "$(ls -A /sys/fs/cgroup 2>/dev/null)" ] || die "no cgroup filesystem at /sys/fs/cgroup"
  # Unix socket paths are limited to 108 bytes.
  [ ${#sock} -lt 100 ] || die "state directory $state is too long for a socket path; set PARLEY_CLUSTER_DIR to a shorter one"
}

# check_free checks that nothing else on the machine holds what the cluster is about to take.
check_free() {
  local port
  for port in $ETCD_PORT $ETCD_PEER_PORT $APISERVER_PORT $CONTROLLER_MANAGER_PORT $SCHEDULER_PORT $KUBELET_PORT $KUBELET_HEALTHZ_PORT; do
    if [ -n "$(ss -Htln "sport = :$port")" ]; then
      die "port $port is in use (by $(ss -Htlnp "sport = :$port" | grep -o 'users:.*' || echo 'another process'))"
    fi
  done
  # A route other than the default one into the service CIDR means it is in use here.
  local svc_ip overlap
  svc_ip=$(service_ip)
  overlap=$(ip route show match "$svc_ip" | grep -v -e '^default ' -e '^blackhole ' || true)
  [ -z "$overlap" ] || die "service CIDR $SERVICE_CIDR overlaps this machine's route '$overlap'; set PARLEY_CLUSTER_SERVICE_CIDR"
  # down kills whatever runs in kubepods cgroups and removes them: they must be ours.
  if [ -n "$(find /sys/fs/cgroup -maxdepth 2 -name kubepods -type d -print -quit)" ]; then
    die "kubepods cgroups exist already: another kubelet runs on this machine, or a cluster whose state
directory is gone left them (then remove them with: find /sys/fs/cgroup -depth -path '*/kubepods*' -type d -exec rmdir {} +)"
  fi
}

# find_cni_loopback prints the standard CNI loopback plugin, which containerd runs for every
# pod sandbox before the configured network (Debian: containernetworking-plugins).
find_cni_loopback() {
  local dir
  for dir in /usr/lib/cni /opt/cni/bin /usr/libexec/cni; do
    [ -x "$dir/loopback" ] && echo "$dir/loopback" && return
  done
  return 1
}

# service_ip prints the first address of the service CIDR, the kubernetes Service's.
service_ip() {
  local a b c d
  IFS=. read -r a b c d <<<"${SERVICE_CIDR%/*}"
  echo "$a.$b.$c.$((d + 1))"
}

# --- certificates and configuration ----------------------------------------------------

# cert <name> <subject> <extendedKeyUsage> [subjectAltName] makes pki/<name>.{key,crt} signed
# by the cluster CA. ECDSA P-256 keys: generated in milliseconds, accepted everywhere.
cert() {
  local name=$1 subject=$2 eku=$3 san=${4:-}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -out "$pki/$name.crt" 2>/dev/null \
    -extfile <(
      echo "basicConstraints=critical,CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$eku"
      [ -z "$san" ] || echo "subjectAltName=$san"
    )
  rm -f "$pki/$name.csr"
}

make_pki() {
  log "making certificates"
  mkdir -p "$pki"
  chmod 700 "$pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=parley-cluster-ca" -days 365 -out "$pki/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  cert kube-apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$(service_ip)"
  # The apiserver's client certificate towards kubelets (logs, exec, port-forward).
  cert kube-apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=parley-cluster-admin" clientAuth
  cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  # The Node authorizer and NodeRestriction know the kubelet by this name and group.
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  cert kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:127.0.0.1"
  # Signs ServiceAccount tokens (apiserver) and legacy token Secrets (controller-manager).
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
}

# write_kubeconfig <file> <cert name> writes a kubeconfig with embedded credentials, so the
# admin one can be copied anywhere.
write_kubeconfig() {
  local file=$1 name=$2
  (
    umask 077
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: parley
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$name.crt")
    client-key-data: $(base64 -w0 <"$pki/$name.key")
contexts:
- name: parley
  context:
    cluster: parley
    user: $name
current-context: parley
EOF
  )
}

write_config() {
  log "writing configuration"
  mkdir -p "$etc" "$state/cni/bin" "$state/cni/net.d" "$state/images"
  write_kubeconfig "$kubeconfig" admin
  write_kubeconfig "$etc/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$etc/kube-scheduler.kubeconfig" kube-scheduler
  write_kubeconfig "$etc/kubelet.kubeconfig" kubelet

  # Everything containerd keeps goes under the state directory, network namespaces included,
  # so that down finds every mount there.
  cat >"$etc/containerd.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
# Snapshotters this cluster does not use; they only fill the log with why they cannot load.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Images are imported, never pulled: the sandbox image must be one of them.
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE runc cannot lower a container's oom_score_adj below its own, and
  # every sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # There is no systemd to delegate cgroups to: the kubelet uses cgroupfs too.
        SystemdCgroup = false
        Root = "$state/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$state/cni/bin"
    conf_dir = "$state/cni/net.d"
EOF

  cat >"$state/cni/net.d/10-parley.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "parley",
  "plugins": [
    {"type": "parley-loopback", "subnet": "$POD_SUBNET", "dataDir": "$state/cni/ipam"}
  ]
}
EOF

  cat >"$etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$sock
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
# No systemd; the machines this is meant for still run cgroups v1, which the kubelet refuses
# unless told otherwise; and swap is not a reason to fail here.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Imported images cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Evict only when really out of room: a busy CI disk must not taint the node.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
clusterDomain: cluster.local
podLogsDir: $state/pod-logs
# Flex volume drivers: none, but the kubelet creates the directory.
volumePluginDir: $state/kubelet/volume-plugins
# Nothing here can inhibit a system shutdown.
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
EOF
}

# --- up ---------------------------------------------------------------------------------

up() {
  prerequisites
  if running; then
    log "already up"
    assets=$(cat "$run/assets")
    print_usage
    return
  fi
  if has_state; then
    log "cleaning up what a previous run left"
    down_steps
  fi
  check_free
  assets=$("$here/envtest-assets.sh" cluster)
  local t0=$SECONDS
  trap up_failed EXIT
  # Exit on these signals rather than die of them, so that up_failed tells what to do.
  trap 'exit 130' INT
  trap 'exit 143' TERM

  mkdir -p "$logs" "$run"
  echo "$assets" >"$run/assets"
  log "building the CNI plugin and the pause image"
  (cd "$root" && CGO_ENABLED=0 "$GO" build -trimpath -o "$state/cni/bin/parley-loopback" ./hack/cni/parley-loopback)
  "$here/image.sh" pause --tag "$PAUSE_IMAGE" --out "$state/images/pause.tar" >/dev/null
  make_pki
  write_config
  ln -sf "$cni_loopback" "$state/cni/bin/loopback"
  ip route replace blackhole "$SERVICE_CIDR"
  echo "$SERVICE_CIDR" >"$run/blackhole-route"

  start etcd "$assets/etcd" --name parley --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "parley=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  # The kubernetes Service's endpoint would be 127.0.0.1, which Endpoints may not hold:
  # --endpoint-reconciler-type=none spares the apiserver from failing to write it forever.
  start kube-apiserver "$assets/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --cert-dir "$pki" --tls-cert-file "$pki/kube-apiserver.crt" --tls-private-key-file "$pki/kube-apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/kube-apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/kube-apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" \
    --kubelet-preferred-address-types Hostname \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false
  wait_for "the apiserver" 60 kube-apiserver kubectl get --raw /readyz

  # Leader election only delays a restart by a lease period on a single-node cluster.
  start kube-controller-manager "$assets/kube-controller-manager" \
    --kubeconfig "$etc/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$etc/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$etc/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" --leader-elect=false \
    --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false \
    --flex-volume-plugin-dir "$state/kube-controller-manager/volume-plugins"
  start kube-scheduler "$assets/kube-scheduler" \
    --kubeconfig "$etc/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$etc/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$etc/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false

  start containerd containerd --config "$etc/containerd.toml"
  wait_for "containerd" 30 containerd ctr_ version
  import_images "$state/images/pause.tar"

  start kubelet "$assets/kubelet" --config "$etc/kubelet.yaml" --kubeconfig "$etc/kubelet.kubeconfig" \
    --root-dir "$state/kubelet" --hostname-override "$NODE_NAME"
  wait_for "node $NODE_NAME to be Ready" 120 kubelet node_ready
  # Pods are refused until the controller-manager has made their namespace's ServiceAccount.
  wait_for "the default ServiceAccount" 60 kube-controller-manager kubectl -n default get serviceaccount default

  trap - EXIT INT TERM
  log "up in $((SECONDS - t0))s"
  print_usage
}

up_failed() {
  local status=$?
  [ "$status" = 0 ] && return
  log "up failed; logs are in $logs; $0 down cleans up"
  exit "$status"
}

# node_ready succeeds when the node is Ready and has no taints left (the not-ready taint goes
# a moment after the condition turns True).
node_ready() {
  [ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
    [ -z "$(kubectl get node "$NODE_NAME" -o jsonpath='{.spec.taints}')" ]
}

# running succeeds when every daemon runs.
running() {
  local d
  for d in "${DAEMONS[@]}"; do
    pid_of "$d" >/dev/null || return 1
  done
}

# has_state succeeds when anything of a cluster is left: a process, a pid file, data.
has_state() {
  [ -n "$(find "$state" -mindepth 1 -maxdepth 1 ! -name logs ! -name lock -print -quit 2>/dev/null)" ] ||
    [ -n "$(state_pids)" ] || [ -n "$(state_mounts)" ]
}

print_usage() {
  cat <<EOF
The cluster is up (node $NODE_NAME; logs in $logs).
  export KUBECONFIG=$kubeconfig
  $assets/kubectl get nodes
Images: hack/image.sh parley --import (then imagePullPolicy IfNotPresent or Never).
hostNetwork pods reach the apiserver at 127.0.0.1:$APISERVER_PORT.
EOF
}

# --- images -------------------------------------------------------------------------------

import_images() {
  local tar
  for tar in "$@"; do
    [ -f "$tar" ] || die "$tar: no such file"
    log "importing $tar"
    # The kubelet sees the images of containerd's k8s.io namespace only.
    ctr_ -n k8s.io images import "$tar" >&2
  done
}

# --- down -------------------------------------------------------------------------------

down() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  if ! has_state; then
    log "nothing to stop"
    return
  fi
  local t0=$SECONDS
  down_steps
  log "down in $((SECONDS - t0))s"
}

# down_steps stops everything and removes everything but the logs, whatever state a previous
# up left, in the order that lets each step finish: the node first (kubelet, then the
# containers, then containerd), then the control plane, the apiserver before etcd. Each step
# tolerates finding nothing to do, so that a half-made cluster comes down as well.
down_steps() {
  # Stopped first, the kubelet cannot restart the containers being killed below.
  stop kubelet
  if pid_of containerd >/dev/null; then
    local ns task
    # Bounded: a wedged containerd must not wedge down; what is left is killed below.
    for ns in $(ctr_ --timeout 10s namespaces ls -q 2>/dev/null); do
      for task in $(ctr_ --timeout 10s -n "$ns" tasks ls -q 2>/dev/null); do
        ctr_ --timeout 10s -n "$ns" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
      done
      # Deleting a task ends its shim; the kill above has to land first.
      for task in $(ctr_ --timeout 10s -n "$ns" tasks ls -q 2>/dev/null); do
        ctr_ --timeout 10s -n "$ns" tasks delete -f "$task" >/dev/null 2>&1 || true
      done
    done
  fi
  stop containerd
  kill_pod_processes
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop "${DAEMONS[i]}"
  done
  # Whatever still runs from here (shims, stray children) is killed outright.
  local pids
  pids=$(state_pids)
  if [ -n "$pids" ]; then
    log "killing leftover processes: $(echo "$pids" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi

  unmount_all
  remove_cgroups
  remove_kubelet_iptables
  remove_host_files
  if [ -f "$run/blackhole-route" ]; then
    ip route del blackhole "$(cat "$run/blackhole-route")" 2>/dev/null || true
  fi
  # The shims' sockets are in /run/containerd/s whatever the configuration says. A shim
  # removes its own when it exits, but not when killed: each shim's bundle records its socket.
  local file address
  while IFS= read -r -d '' file; do
    address=$(cat "$file") || continue
    case $address in unix:///run/containerd/s/*) rm -f "${address#unix://}" ;; esac
  done < <(find "$state/containerd/state" -path '*/io.containerd.runtime.v2.task/*' -name address -print0 2>/dev/null)
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true

  find "$state" -mindepth 1 -maxdepth 1 ! -name logs ! -name lock -exec rm -rf {} + ||
    log "warning: could not remove everything in $state"
}

# state_pids prints the processes of this cluster that may have outlived their pid files: our
# daemons and containerd's shims, whose command lines name the state directory. Other
# processes that merely mention it (a `tail -f` of a log) are left alone.
state_pids() {
  local f pid args
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    args=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    case ${args%% *} in
    */etcd | */kube-* | */kubelet | containerd | */containerd | containerd-shim* | */containerd-shim*) ;;
    *) continue ;;
    esac
    case $args in *"$state/"*) echo "$pid" ;; esac
  done
  return 0
}

# kill_pod_processes kills what is left in the pods' cgroups (containers whose shim is gone).
kill_pod_processes() {
  local procs pids
  procs=$(find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs 2>/dev/null || true)
  [ -n "$procs" ] || return 0
  # shellcheck disable=SC2086 # one file per word
  pids=$(cat $procs 2>/dev/null | sort -un) || true
  if [ -n "$pids" ]; then
    log "killing leftover pod processes: $(echo "$pids" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi
}

# state_mounts prints the mount points under the state directory, deepest first: container
# root filesystems, sandbox /dev/shm, network namespaces, the kubelet's volume mounts.
state_mounts() {
  # The 5th field of mountinfo, with the spaces in it escaped as \040.
  awk -v dir="$state" '{ gsub(/\\040/, " ", $5); if (index($5, dir "/") == 1) print $5 }' /proc/self/mountinfo |
    awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-
}

unmount_all() {
  local m i
  # Mounts can stack on one mount point: repeat until none is left.
  for ((i = 0; i < 5; i++)); do
    [ -n "$(state_mounts)" ] || return 0
    while IFS= read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(state_mounts)
  done
  log "warning: could not unmount: $(state_mounts | tr '\n' ' ')"
}

# remove_cgroups removes the kubelet's kubepods hierarchy from every cgroup controller
# (cgroups v1) or the unified tree (v2), children before parents.
remove_cgroups() {
  local dir i
  for ((i = 0; i < 20; i++)); do
    local left=0
    for dir in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
      [ -d "$dir" ] || continue
      find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || left=1
    done
    [ "$left" = 0 ] && return 0
    # A cgroup cannot go while a killed process in it is still exiting.
    sleep 0.2
  done
  log "warning: could not remove every kubepods cgroup"
}

# remove_kubelet_iptables removes what the kubelet adds to iptables and ip6tables: the chains
# it probes the iptables mode with (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY) and KUBE-FIREWALL,
# which drops packets to 127.0.0.0/8 from other sources. check_free made sure no other kubelet
# runs here, so they are ours.
remove_kubelet_iptables() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    while "$ipt" -w 5 -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while "$ipt" -w 5 -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    for table in mangle nat filter; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        if "$ipt" -w 5 -t "$table" -F "$chain" 2>/dev/null; then
          "$ipt" -w 5 -t "$table" -X "$chain" 2>/dev/null || true
        fi
      done
    done
  done
}

# remove_host_files removes what the kubelet and containerd write outside the state directory
# whatever they are told: the kubelet's device plugin socket and checkpoint in
# /var/lib/kubelet/device-plugins (ours: check_free made sure no other kubelet runs), its log
# symlinks in /var/log/containers and libcni's result cache in /var/lib/cni/results for pods
# that went without a CNI DEL (those naming the state directory), then these directories if
# that leaves them empty.
remove_host_files() {
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
  find /var/log/containers -maxdepth 1 -type l -lname "$state/*" -delete 2>/dev/null || true
  { grep -lsFZ -- "$state/" /var/lib/cni/results/* || true; } | xargs -0 -r rm -f --
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/lib/cni/results /var/lib/cni 2>/dev/null || true
}

# --- status -------------------------------------------------------------------------------

status() {
  local d pid ok=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then
      printf '%-24s running (pid %s)\n' "$d" "$pid"
    else
      printf '%-24s stopped\n' "$d"
      ok=1
    fi
  done
  if pid_of kube-apiserver >/dev/null && assets=$(cat "$run/assets" 2>/dev/null); then
    kubectl get nodes -o wide || ok=1
  fi
  echo "state: $state"
  return "$ok"
}

# --- main ---------------------------------------------------------------------------------

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case $cmd in
up | down)
  mkdir -p "$state"
  # One up or down at a time.
  exec 9>"$state/lock"
  flock -n 9 || die "another $0 is running on $state"
  "$cmd"
  ;;
status) status ;;
kubeconfig)
  [ -f "$kubeconfig" ] || die "no cluster: run $0 up"
  echo "$kubeconfig"
  ;;
env)
  [ -f "$kubeconfig" ] || die "no cluster: run $0 up"
  echo "export KUBECONFIG=$kubeconfig"
  echo "export PARLEY_CLUSTER_APISERVER=127.0.0.1:$APISERVER_PORT"
  ;;
import)
  [ $# -gt 0 ] || usage
  pid_of containerd >/dev/null || die "the cluster is not up: run $0 up"
  import_images "$@"
  ;;
*) usage ;;
esac
