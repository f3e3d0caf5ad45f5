"""Where the Go-built test binaries live: one cache outside the repo, keyed by version."""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (_HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value.strip().strip('"')
    return out


VERSIONS = _versions()
K8S_VERSION = VERSIONS["K8S_VERSION"]
ETCD_VERSIONS = VERSIONS["ETCD_VERSIONS"].split()  # newest line first
HELM_VERSION = VERSIONS["HELM_VERSION"]
VERSITYGW_VERSION = VERSIONS["VERSITYGW_VERSION"]
COREDNS_VERSION = VERSIONS["COREDNS_VERSION"]

_K8S = {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}
_ETCD = {"etcd", "etcdctl", "etcdutl"}


def cache_dir() -> Path:
    return Path(os.environ.get("ETCDOP_CACHE", Path.home() / ".cache" / "etcdop"))


def bin_dir(name: str, version: str | None = None) -> Path:
    """The cached directory holding NAME; VERSION picks an etcd line (default: the newest)."""
    base = cache_dir() / "bin"
    if name in _K8S:
        return base / f"kubernetes-{K8S_VERSION}"
    if name in _ETCD:
        return base / f"etcd-{version or ETCD_VERSIONS[0]}"
    if name == "helm":
        return base / f"helm-{HELM_VERSION}"
    if name == "versitygw":
        return base / f"versitygw-{VERSITYGW_VERSION}"
    if name == "coredns":
        return base / f"coredns-{COREDNS_VERSION}"
    raise KeyError(f"unknown test binary {name!r}")


def bin_path(name: str, version: str | None = None) -> Path:
    """The path of one cached binary; raises with the build command when it is missing."""
    path = bin_dir(name, version) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `bash e2e/localcluster/build.sh` (or `make infra`) first"
        )
    return path
