#!/usr/bin/env bash
# Build the local test infrastructure from Go modules into a cache outside the repo.
#
# Every binary lands in $ETCDOP_CACHE/bin/<name>-<version>/ and is rebuilt only when missing,
# so a warm machine pays nothing and a fresh one pays the cold build once.
# Usage: build.sh [all|k8s|etcd|helm|s3|coredns]...
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
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  if have "$out" "${bins[@]}"; then log "kubernetes $v: cached"; return; fi
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
     log "  go build $b"
     go build -trimpath -ldflags "$ld" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
     mv "$out/$b.tmp" "$out/$b"
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
         build_k8s; build_helm; build_s3; build_coredns ;;
    k8s) build_k8s ;;
    etcd) for v in $ETCD_VERSIONS; do build_etcd "$v"; done ;;
    helm) build_helm ;;
    s3) build_s3 ;;
    coredns) build_coredns ;;
    *) echo "build.sh: unknown target '$t' (all|k8s|etcd|helm|s3|coredns)" >&2; exit 2 ;;
  esac
done
log "done in $((SECONDS - t_all)) s; binaries under $BIN"
