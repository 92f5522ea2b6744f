#!/usr/bin/env bash
# Builds the binaries envtest needs (etcd, kube-apiserver, kubectl) and controller-gen at
# pinned versions from the Go module proxy, into a cache outside the checkout keyed by
# version, and prints the folder to use as KUBEBUILDER_ASSETS. A second run costs nothing.
#
#   export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
#   hack/envtest-assets.sh cluster            # also kube-controller-manager, kube-scheduler and
#                                             # kubelet for hack/cluster.sh; prints the same folder
#   hack/envtest-assets.sh controller-gen     # prints the controller-gen binary instead
#   hack/envtest-assets.sh helm               # likewise helm, protoc-gen-go, protoc-gen-go-grpc
#
# Release tarballs (setup-envtest) are not reachable here, so everything is built from
# source: about 8 minutes and 6 GB of Go build cache the first time, a few more minutes for
# `cluster` (the kubelet needs a C compiler: it is built with cgo).
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.36.3}
K8S_STAGING_VERSION=${K8S_STAGING_VERSION:-v0.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CONTROLLER_GEN_VERSION=${CONTROLLER_GEN_VERSION:-v0.23.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
PROTOC_GEN_GO_VERSION=${PROTOC_GEN_GO_VERSION:-v1.36.12}
PROTOC_GEN_GO_GRPC_VERSION=${PROTOC_GEN_GO_GRPC_VERSION:-v1.6.2}

cache=${PARLEY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley}
assets=$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION
tools=$cache/tools
log() { echo "envtest-assets: $*" >&2; }

build_controller_gen() {
  local dir=$tools/controller-gen-$CONTROLLER_GEN_VERSION
  if [ ! -x "$dir/controller-gen" ]; then
    log "building controller-gen $CONTROLLER_GEN_VERSION"
    GOBIN=$dir go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION" >&2
  fi
  echo "$dir/controller-gen"
}

# build_tool installs a Go command at a pinned version into its own cached folder and prints
# its path: build_tool <name> <package> <version> [go install flags...].
build_tool() {
  local name=$1 pkg=$2 version=$3
  shift 3
  local dir=$tools/$name-$version
  if [ ! -x "$dir/$name" ]; then
    log "building $name $version"
    GOBIN=$dir go install "$@" "$pkg@$version" >&2
  fi
  echo "$dir/$name"
}

# throwaway makes an empty module to build a tool whose go.mod cannot be installed directly.
throwaway() {
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/parley-build.XXXXXX")
  (cd "$dir" && go mod init parley.local/build >/dev/null 2>&1)
  echo "$dir"
}

build_etcd() {
  [ -x "$assets/etcd" ] && return
  log "building etcd $ETCD_VERSION"
  local dir
  dir=$(throwaway)
  cat >"$dir/tools.go" <<GO
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
GO
  (
    cd "$dir"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" >&2
    CGO_ENABLED=0 go build -o "$assets/etcd" go.etcd.io/etcd/server/v3 >&2
  )
  rm -rf "$dir"
}

# build_kube builds the given commands of k8s.io/kubernetes (kube-apiserver, kubectl,
# kube-controller-manager, kube-scheduler, kubelet) into $assets, skipping those already there,
# all from one throwaway module so the Go build cache is shared between them.
build_kube() {
  local missing=() name
  for name in "$@"; do
    [ -x "$assets/$name" ] || missing+=("$name")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "building ${missing[*]} $KUBERNETES_VERSION"
  local dir gomod
  dir=$(throwaway)
  (
    cd "$dir"
    # kubernetes' own go.mod replaces every k8s.io/X with ./staging/src/k8s.io/X; a module
    # that requires kubernetes must replace each with its published version instead.
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    {
      echo "module parley.local/build"
      echo
      echo "go 1.26"
      echo
      echo "godebug default=go1.26"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      grep -o 'k8s.io/[a-z0-9-]* => ./staging/src/k8s.io/[a-z0-9-]*' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
    } >go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${missing[@]}"
      printf ')\n'
    } >tools.go
    go mod tidy >&2
    local minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    # Without these the binaries report a bogus version (v0.0.0-master+$Format:...$).
    local ldflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    for name in "${missing[@]}"; do
      # The kubelet needs cgo (cAdvisor, the cgroup and mount libraries); the rest build
      # static like the upstream release binaries.
      local cgo=0
      [ "$name" = kubelet ] && cgo=1
      log "  go build $name"
      CGO_ENABLED=$cgo go build -ldflags "$ldflags" -o "$assets/$name" "k8s.io/kubernetes/cmd/$name" >&2
    done
  )
  rm -rf "$dir"
}

case "${1:-assets}" in
controller-gen)
  build_controller_gen
  ;;
helm)
  build_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ;;
protoc-gen-go)
  build_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
  ;;
protoc-gen-go-grpc)
  build_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
  ;;
assets)
  mkdir -p "$assets"
  build_etcd
  build_kube kube-apiserver kubectl
  echo "$assets"
  ;;
cluster)
  mkdir -p "$assets"
  build_etcd
  build_kube kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet
  echo "$assets"
  ;;
*)
  echo "usage: $0 [assets|cluster|controller-gen|helm|protoc-gen-go|protoc-gen-go-grpc]" >&2
  exit 2
  ;;
esac
