"""A pod's volumes as directories in the pod's state dir (or the bound PV's directory), and the
container mounts that put them at their mountPaths. Content comes from the API: Secrets,
ConfigMaps, the downward API and bound service-account tokens (TokenRequest)."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.pods import PodFacts, expand, field_ref, resource_field

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class VolumeNotReady(Exception):
    """A volume whose source is not there yet (claim unbound, secret missing): retry later."""


@dataclass(frozen=True)
class MountSpec:
    source: str
    target: str
    read_only: bool


@dataclass
class PodVolumes:
    """Where each volume of one pod lives; ``refresh`` rewrites the API-backed ones."""

    root: Path
    sources: dict[str, str] = field(default_factory=dict)
    api_backed: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    token_written: dict[str, float] = field(default_factory=dict)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Atomic, so a container never reads half a token or a half-rotated certificate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_dir(path: str | Path) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)


def write_files(target: Path, files: Mapping[str, tuple[bytes, int]], volume: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for rel, (data, mode) in files.items():
        if ".." in Path(rel).parts or os.path.isabs(rel):
            raise VolumeNotReady(f"volume {volume!r}: item path {rel!r} must be relative")
        write_file(target / rel, data, mode)


def key_files(
    data: Mapping[str, bytes],
    items: list[Mapping[str, Any]] | None,
    default_mode: int,
    what: str,
    optional: bool,
) -> dict[str, tuple[bytes, int]]:
    """Which files a Secret/ConfigMap projection writes: every key, or the listed items."""
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out: dict[str, tuple[bytes, int]] = {}
    for it in items:
        key = it["key"]
        if key not in data:
            if optional:
                continue
            raise VolumeNotReady(f"{what} has no key {key!r}")
        out[it.get("path", key)] = (data[key], int(it.get("mode", default_mode)))
    return out


def downward_files(
    pod: Mapping[str, Any], items: list[Mapping[str, Any]], facts: PodFacts, default_mode: int
) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    containers = {c["name"]: c for c in pod.get("spec", {}).get("containers", [])}
    for it in items:
        if "fieldRef" in it:
            value = field_ref(pod, it["fieldRef"]["fieldPath"], facts)
        else:
            ref = it["resourceFieldRef"]
            c = containers.get(ref.get("containerName", ""), {})
            value = resource_field(c, ref)
        out[it["path"]] = (value.encode(), int(it.get("mode", default_mode)))
    return out


def container_mounts(
    container: Mapping[str, Any], sources: Mapping[str, str], env: Mapping[str, str]
) -> list[MountSpec]:
    """volumeMounts -> (source dir or file, target, ro); subPath dirs are created as the kubelet
    does. A mount of an unknown volume is the pod's error, named here."""
    mounts: list[MountSpec] = []
    for vm in container.get("volumeMounts", []) or []:
        name = vm["name"]
        if name not in sources:
            raise VolumeNotReady(
                f"container {container.get('name')!r} mounts volume {name!r} that the pod lacks"
            )
        source = Path(sources[name])
        sub = vm.get("subPath") or expand(vm.get("subPathExpr", "") or "", env)
        if sub:
            if ".." in Path(sub).parts or os.path.isabs(sub):
                raise VolumeNotReady(f"volumeMount {name!r}: subPath {sub!r} must be relative")
            source = source / sub
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        mounts.append(MountSpec(str(source), vm["mountPath"], bool(vm.get("readOnly", False))))
    return mounts


class VolumeManager:
    """Materialises and cleans up the volumes of pods, reading their content from the API."""

    def __init__(self, kube: Kube, pv_root: Path) -> None:
        self.kube = kube
        self.pv_root = pv_root

    async def _data(self, kind: str, ns: str, name: str) -> dict[str, bytes] | None:
        obj = await self.kube.get(f"/api/v1/namespaces/{ns}/{kind}/{name}")
        if obj is None:
            return None
        if kind == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    async def _source_files(
        self,
        pod: Mapping[str, Any],
        src: Mapping[str, Any],
        facts: PodFacts,
        default_mode: int,
        token_age: dict[str, float],
        vol: str,
    ) -> dict[str, tuple[bytes, int]]:
        ns = pod["metadata"]["namespace"]
        if "secret" in src or "configMap" in src:
            is_secret = "secret" in src
            s = src["secret" if is_secret else "configMap"]
            name = s.get("secretName") or s.get("name", "")
            what = f'{"secret" if is_secret else "configmap"} "{name}"'
            data = await self._data("secrets" if is_secret else "configmaps", ns, name)
            optional = bool(s.get("optional", False))
            if data is None:
                if optional:
                    return {}
                raise VolumeNotReady(f"volume {vol!r}: {what} not found")
            mode = int(s.get("defaultMode", default_mode))
            return key_files(data, s.get("items"), mode, what, optional)
        if "downwardAPI" in src:
            d = src["downwardAPI"]
            return downward_files(
                pod, d.get("items", []), facts, int(d.get("defaultMode", default_mode))
            )
        if "serviceAccountToken" in src:
            t = src["serviceAccountToken"]
            token = await self._token(pod, t.get("audience"), int(t.get("expirationSeconds", 3607)))
            token_age[vol] = time.monotonic()
            return {t.get("path", "token"): (token.encode(), default_mode)}
        if "clusterTrustBundle" in src:
            raise VolumeNotReady(f"volume {vol!r}: clusterTrustBundle is not supported")
        return {}

    async def _token(self, pod: Mapping[str, Any], audience: str | None, seconds: int) -> str:
        ns = pod["metadata"]["namespace"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": max(seconds, 600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        try:
            out = await self.kube.create(
                f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body
            )
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            raise VolumeNotReady(f"token for serviceaccount {ns}/{sa}: {why}") from e
        return str(out["status"]["token"])

    async def _write_api_volume(
        self,
        pod: Mapping[str, Any],
        vol: Mapping[str, Any],
        target: Path,
        facts: PodFacts,
        pv: PodVolumes,
    ) -> None:
        name = vol["name"]
        if "projected" in vol:
            p = vol["projected"]
            mode = int(p.get("defaultMode", 0o644))
            files: dict[str, tuple[bytes, int]] = {}
            for src in p.get("sources", []) or []:
                files.update(
                    await self._source_files(pod, src, facts, mode, pv.token_written, name)
                )
        else:
            files = await self._source_files(pod, vol, facts, 0o644, pv.token_written, name)
        write_files(target, files, name)

    async def _claim_path(self, ns: str, claim: str, vol: str) -> str:
        pvc = await self.kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise VolumeNotReady(f'volume {vol!r}: persistentvolumeclaim "{claim}" not found')
        pv_name = pvc.get("spec", {}).get("volumeName")
        if not pv_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeNotReady(f'volume {vol!r}: persistentvolumeclaim "{claim}" is not bound')
        pv = await self.kube.get(f"/api/v1/persistentvolumes/{pv_name}")
        if pv is None:
            raise VolumeNotReady(f'volume {vol!r}: persistentvolume "{pv_name}" not found')
        spec = pv.get("spec", {})
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not path:
            raise VolumeNotReady(
                f'persistentvolume "{pv_name}" is neither hostPath nor local: the local node '
                "cannot mount it"
            )
        ensure_dir(path)
        return str(path)

    async def setup(self, pod: Mapping[str, Any], pod_dir: Path, facts: PodFacts) -> PodVolumes:
        """Create every volume of POD; raises VolumeNotReady to be retried."""
        pv = PodVolumes(root=pod_dir / "volumes")
        ns = pod["metadata"]["namespace"]
        for vol in pod.get("spec", {}).get("volumes", []) or []:
            name = vol["name"]
            target = pv.root / name
            if "emptyDir" in vol:
                ensure_dir(target)
                pv.sources[name] = str(target)
            elif "persistentVolumeClaim" in vol:
                pv.sources[name] = await self._claim_path(
                    ns, vol["persistentVolumeClaim"]["claimName"], name
                )
            elif "ephemeral" in vol:
                pv.sources[name] = await self._claim_path(
                    ns, f"{pod['metadata']['name']}-{name}", name
                )
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                if hp.get("type") in ("DirectoryOrCreate", None, ""):
                    ensure_dir(hp["path"])
                pv.sources[name] = hp["path"]
            elif any(k in vol for k in ("secret", "configMap", "downwardAPI", "projected")):
                await self._write_api_volume(pod, vol, target, facts, pv)
                pv.sources[name] = str(target)
                pv.api_backed[name] = vol
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise VolumeNotReady(f"volume {name!r}: type {kinds} is not supported locally")
        return pv

    async def refresh(self, pod: Mapping[str, Any], facts: PodFacts, pv: PodVolumes) -> None:
        """Rewrite Secret/ConfigMap/downward/token volumes, as the kubelet's periodic sync does."""
        for name, vol in pv.api_backed.items():
            await self._write_api_volume(pod, vol, pv.root / name, facts, pv)

    @staticmethod
    def teardown(pod_dir: Path) -> None:
        """Remove the pod's own volumes; claim data lives elsewhere and stays."""
        shutil.rmtree(pod_dir / "volumes", ignore_errors=True)
