#!/usr/bin/env bash
# Build the local test infrastructure from Go modules into a cache outside the repo.
#
# Every binary lands in $ETCDOP_CACHE/bin/<name>-<version>/ and is rebuilt only when missing,
# so a warm machine pays nothing and a fresh one pays the cold build once.
# Usage: build.sh [all|k8s|etcd|helm|s3|coredns|node]...
# `node` (part of `all`) builds the real node: kubelet, kube-proxy, containerd, the CNI
# plugins, crictl and a pause binary (runc is Debian's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

CACHE=${ETCDOP_CACHE:-$HOME/.cache/etcdop}
SRC=$CACHE/src
BIN=$CACHE/bin
mkdir -p "$SRC" "$BIN"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
command -v go >/dev/null || { echo "build.sh: go is not on PATH; install Go >= 1.26" >&2; exit 1; }

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# have DIR NAME... : true when every named binary is already in DIR.
have() {
  local dir=$1; shift
  for n in "$@"; do [ -x "$dir/$n" ] || return 1; done
}

# newmod DIR MODULE : a fresh, empty Go module to build dependency main packages from.
newmod() {
  rm -rf "$1"; mkdir -p "$1"
  printf 'module %s\n\ngo 1.26\n' "$2" >"$1/go.mod"
}

build_k8s() {
  local v=$K8S_VERSION out=$BIN/kubernetes-$K8S_VERSION
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl "$@")
  if have "$out" "${bins[@]}"; then log "kubernetes $v (${bins[*]}): cached"; return; fi
  local t0=$SECONDS mod=$SRC/kubernetes-$v staging=v0.${v#v1.}
  log "kubernetes $v: building ${bins[*]} (cold: ~20-30 min on 2 cores)"
  newmod "$mod" etcdop.local/k8sbuild
  (cd "$mod"
   go mod download -json "k8s.io/kubernetes@$v" >/dev/null
   local gomod
   gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
   echo "require k8s.io/kubernetes $v" >>go.mod
   # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging
   # paths; a dependent module must point each one at its published version instead.
   grep -E '=> \./staging/' "$gomod" | awk -v s="$staging" '{print "replace " $1 " => " $1 " " s}' >>go.mod
   local ld="-s -w"
   local minor=${v#v1.}; minor=${minor%%.*}
   for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
     ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
     ld+=" -X $p.buildDate=2026-01-01T00:00:00Z"
   done
   mkdir -p "$out"
   for b in "${bins[@]}"; do
     [ -x "$out/$b" ] && continue
     local tb=$SECONDS
     log "  go build $b"
     go build -trimpath -ldflags "$ld" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
     mv "$out/$b.tmp" "$out/$b"
     log "  $b: built in $((SECONDS - tb)) s"
   done)
  log "kubernetes $v: built in $((SECONDS - t0)) s"
}

build_etcd() {
  local v=$1 out=$BIN/etcd-$1
  if have "$out" etcd etcdctl etcdutl; then log "etcd $v: cached"; return; fi
  local t0=$SECONDS mod=$SRC/etcd-$v
  log "etcd $v: building etcd etcdctl etcdutl"
  newmod "$mod" etcdop.local/etcdbuild
  (cd "$mod"
   # etcd's own go.mod files carry replace directives, so `go install pkg@v` refuses them;
   # as dependencies of this module their replaces are ignored and the tagged versions are used.
   go get "go.etcd.io/etcd/server/v3@$v" "go.etcd.io/etcd/etcdctl/v3@$v" "go.etcd.io/etcd/etcdutl/v3@$v" >/dev/null 2>&1 || \
     go get "go.etcd.io/etcd/server/v3@$v" "go.etcd.io/etcd/etcdctl/v3@$v" "go.etcd.io/etcd/etcdutl/v3@$v"
   mkdir -p "$out"
   go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$out/etcd.tmp" "$out/etcd"
   go build -trimpath -ldflags "-s -w" -o "$out/etcdctl.tmp" go.etcd.io/etcd/etcdctl/v3 && mv "$out/etcdctl.tmp" "$out/etcdctl"
   go build -trimpath -ldflags "-s -w" -o "$out/etcdutl.tmp" go.etcd.io/etcd/etcdutl/v3 && mv "$out/etcdutl.tmp" "$out/etcdutl")
  log "etcd $v: built in $((SECONDS - t0)) s"
}

# goinstall NAME VERSION PKG LDFLAGS : `go install pkg@version` into the cache.
goinstall() {
  local name=$1 v=$2 pkg=$3 ld=$4 out=$BIN/$1-$2
  if have "$out" "$name"; then log "$name $v: cached"; return; fi
  local t0=$SECONDS
  log "$name $v: go install $pkg@$v"
  mkdir -p "$out.tmp"
  (cd "$SRC" && GOFLAGS= GOBIN="$out.tmp" go install -trimpath -ldflags "$ld" "$pkg@$v")
  mv "$out.tmp/$name" "$out.tmp/$name.x" 2>/dev/null || true
  mkdir -p "$out"; mv "$out.tmp/$name.x" "$out/$name"; rm -rf "$out.tmp"
  log "$name $v: built in $((SECONDS - t0)) s"
}

# goinstall_many DIR VERSION MODULE LDFLAGS CMD... : several main packages of one module into one
# cache directory (containerd's daemon, ctr and shim; the CNI plugins).
goinstall_many() {
  local dir=$1 v=$2 mod=$3 ld=$4; shift 4
  local out=$BIN/$dir-$v names=() pkgs=()
  for c in "$@"; do names+=("${c##*/}"); pkgs+=("$mod/$c@$v"); done
  if have "$out" "${names[@]}"; then log "$dir $v: cached"; return; fi
  local t0=$SECONDS
  log "$dir $v: go install ${names[*]}"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$SRC" && GOFLAGS= GOBIN="$out.tmp" go install -trimpath -ldflags "$ld" "${pkgs[@]}")
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "$dir $v: built in $((SECONDS - t0)) s"
}

# The pause binary of the pod sandbox image: registry.k8s.io's is C; a few lines of Go, built
# static here, do the same job (sleep until a signal, reap adopted children).
build_pause() {
  local out=$BIN/pause-$PAUSE_VERSION
  if have "$out" pause; then log "pause $PAUSE_VERSION: cached"; return; fi
  local t0=$SECONDS mod=$SRC/pause-$PAUSE_VERSION
  newmod "$mod" etcdop.local/pause
  cp "$here/kubelet/pause.go" "$mod/main.go"
  mkdir -p "$out"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out/pause.tmp" . && mv "$out/pause.tmp" "$out/pause")
  log "pause $PAUSE_VERSION: built in $((SECONDS - t0)) s"
}

build_node() {
  build_k8s kubelet kube-proxy
  goinstall_many containerd "$CONTAINERD_VERSION" github.com/containerd/containerd/v2 \
    "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    cmd/containerd cmd/ctr cmd/containerd-shim-runc-v2
  goinstall_many cni-plugins "$CNI_PLUGINS_VERSION" github.com/containernetworking/plugins "-s -w" \
    plugins/main/bridge plugins/main/loopback plugins/ipam/host-local plugins/meta/portmap
  goinstall crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  build_pause
  # runc needs cgo (libseccomp) as a Go module; Debian's runc is used instead (.ci/run installs it).
  command -v runc >/dev/null || log "runc: not on PATH; install Debian's: apt-get install runc"
}

build_helm() {
  goinstall helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}
build_s3() { goinstall versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw "-s -w"; }
build_coredns() { goinstall coredns "$COREDNS_VERSION" github.com/coredns/coredns "-s -w"; }

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(all)
t_all=$SECONDS
for t in "${targets[@]}"; do
  case $t in
    all) for v in $ETCD_VERSIONS; do build_etcd "$v"; done
         build_k8s; build_helm; build_s3; build_coredns; build_node ;;
    k8s) build_k8s ;;
    etcd) for v in $ETCD_VERSIONS; do build_etcd "$v"; done ;;
    helm) build_helm ;;
    s3) build_s3 ;;
    coredns) build_coredns ;;
    node) build_node ;;
    *) echo "build.sh: unknown target '$t' (all|k8s|etcd|helm|s3|coredns|node)" >&2; exit 2 ;;
  esac
done
log "done in $((SECONDS - t_all)) s; binaries under $BIN"
