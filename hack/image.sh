#!/usr/bin/env bash
# Builds container images without Docker: a single-layer docker-archive tar (manifest.json, the
# config JSON named by its sha256, the layer's layer.tar) from one static binary, using only
# go, GNU tar and sha256sum. The layer mirrors gcr.io/distroless/static:nonroot, the base of
# the Dockerfile: /etc/passwd and /etc/group with nonroot (65532), /home/nonroot, /tmp, the CA
# bundle when this machine has one. The archive loads with `docker load`, `podman load` and
# `ctr images import`; the same binary and CA bundle give the same bytes.
#
#   hack/image.sh parley [--tag T] [--out FILE] [--import]   # parley at /parley, as the Dockerfile
#   hack/image.sh pause  [--tag T] [--out FILE] [--import]   # hack/pause as registry.k8s.io/pause:3.10
#   hack/image.sh binary FILE --tag T [--path /x] [--user U:G] [--out FILE] [--import]
#
# --import loads the archive into the containerd of hack/cluster.sh (namespace k8s.io), where
# pods with the default imagePullPolicy (IfNotPresent for non-latest tags) use it. GOARCH
# selects the architecture (default: go env GOARCH). Prints the archive's path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
GO=${GO:-go}
# The layer's timestamps (and the image's creation time): fixed, for reproducible images.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

log() { echo "image: $*" >&2; }
die() {
  echo "image: $*" >&2
  exit 1
}
usage() {
  sed -n '/^#   hack/s/^#   //p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# build_rootfs <dir> <binary> <path in image> writes the root filesystem into dir.
build_rootfs() {
  local fs=$1 bin=$2 path=$3
  mkdir -p "$fs/etc/ssl/certs" "$fs/tmp" "$fs/root" "$fs/home/nonroot" "$fs$(dirname "$path")"
  # The users of distroless: root, nobody, nonroot; a runAsNonRoot pod needs the numeric
  # USER below, these names only make tools inside the image print names instead of numbers.
  cat >"$fs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$fs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  # Parley dials TLS peers in client mode; distroless ships the same bundle.
  if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/ca-certificates.crt"
  else
    log "warning: /etc/ssl/certs/ca-certificates.crt not found; the image has no CA bundle"
  fi
  cp "$bin" "$fs$path"
  # Set every mode explicitly: the umask and the source files' modes must not leak in.
  find "$fs" -type d -exec chmod 0755 {} +
  find "$fs" -type f -exec chmod 0644 {} +
  chmod 0755 "$fs$path"
  chmod 1777 "$fs/tmp"
  chmod 0700 "$fs/root" "$fs/home/nonroot"
}

# build_archive <binary> <tag> <path in image> <user> <workdir> <out> writes the docker-archive.
build_archive() {
  local bin=$1 tag=$2 path=$3 user=$4 workdir=$5 out=$6
  local arch
  arch=${GOARCH:-$("$GO" env GOARCH)}
  if command -v readelf >/dev/null && readelf -l "$bin" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$bin is dynamically linked; the image has no libc (build it with CGO_ENABLED=0)"
  fi

  build_rootfs "$work/rootfs" "$bin" "$path"

  # Owners and times are set on the command line, not taken from the files, so that building
  # as any user gives the same bytes; home/nonroot is appended apart, owned by nonroot.
  local tarflags=(--format=gnu --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --no-recursion)
  (
    cd "$work/rootfs"
    find . -mindepth 1 ! -path ./home/nonroot | sed 's|^\./||' | LC_ALL=C sort |
      tar "${tarflags[@]}" --owner=0 --group=0 -cf "$work/layer.tar" -T -
    tar "${tarflags[@]}" --owner=65532 --group=65532 -rf "$work/layer.tar" home/nonroot
  )

  local diff_id created config_digest
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  mkdir -p "$work/image/$diff_id"
  mv "$work/layer.tar" "$work/image/$diff_id/layer.tar"
  # Keys in the order docker writes them; no whitespace, so the digest is stable.
  printf '{"architecture":"%s","config":{"User":"%s","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["%s"],"WorkingDir":"%s"},"created":"%s","history":[{"created":"%s","created_by":"hack/image.sh"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$user" "$path" "$workdir" "$created" "$created" "$diff_id" >"$work/config.json"
  config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/image/$config_digest.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config_digest" "$tag" "$diff_id" >"$work/image/manifest.json"

  mkdir -p "$(dirname "$out")"
  (cd "$work/image" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
    tar --format=gnu --numeric-owner --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" --no-recursion -cf "$out.tmp" -T -)
  mv "$out.tmp" "$out"
  log "$tag ($arch, $(du -h "$out" | cut -f1)) -> $out"
}

# go_build <package> <output> builds a static binary the way the Dockerfile does.
go_build() {
  log "go build $1"
  (cd "$root" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$2" "$1")
}

[ $# -ge 1 ] || usage
kind=$1
shift
bin='' tag='' path='' user=65532:65532 out='' import=false
if [ "$kind" = binary ]; then
  [ $# -ge 1 ] || usage
  bin=$1
  shift
fi
while [ $# -gt 0 ]; do
  case $1 in
  --tag) tag=${2:?--tag needs a value} && shift ;;
  --path) path=${2:?--path needs a value} && shift ;;
  --user) user=${2:?--user needs a value} && shift ;;
  --out) out=${2:?--out needs a value} && shift ;;
  --import) import=true ;;
  *) usage ;;
  esac
  shift
done

case $kind in
parley)
  tag=${tag:-ghcr.io/parley-dev/parley:dev}
  path=${path:-/parley}
  out=${out:-$root/dist/parley-image.tar}
  ;;
pause)
  tag=${tag:-registry.k8s.io/pause:3.10}
  path=${path:-/pause}
  # The upstream pause image runs as 65535.
  user=65535:65535
  out=${out:-$root/dist/pause-image.tar}
  ;;
binary)
  [ -n "$tag" ] || die "binary needs --tag"
  [ -f "$bin" ] || die "$bin: no such file"
  path=${path:-/$(basename "$bin")}
  out=${out:-$root/dist/$(basename "$bin")-image.tar}
  ;;
*)
  usage
  ;;
esac
case $path in /*) ;; *) die "--path must be absolute" ;; esac
case $out in /*) ;; *) out=$PWD/$out ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/parley-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
case $kind in
parley | pause)
  pkg=./cmd/parley
  [ "$kind" = pause ] && pkg=./hack/pause
  go_build "$pkg" "$work/bin"
  bin=$work/bin
  ;;
esac
# distroless nonroot starts in the user's home; other users get /.
workdir=/home/nonroot
[ "$user" = 65532:65532 ] || workdir=/

build_archive "$bin" "$tag" "$path" "$user" "$workdir" "$out"
if $import; then
  "$here/cluster.sh" import "$out"
fi
echo "$out"
