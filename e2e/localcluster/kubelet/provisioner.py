"""A local dynamic provisioner: StorageClass ``local`` (the default class) whose claims get a
hostPath PersistentVolume under the nodes' state dir, pre-bound to the claim so that the PV
controller of kube-controller-manager completes the binding. All nodes are this one host, so
the data is reachable from any node: no node affinity, and Immediate binding is exact.
Released volumes of reclaim policy Delete lose their directory and their PV."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import httpx

from e2e.localcluster.kubeapi import ApiError, KubeClient, Obj, list_watch

log = logging.getLogger("etcdop.localcluster.provisioner")

CLASS_NAME = "local"
PROVISIONER = "etcdop.io/local"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def wants_volume(pvc: Obj, default_class: bool = True) -> bool:
    """A pending claim of our class (or of no class when ours is the default) without a volume."""
    spec = pvc.get("spec", {})
    if spec.get("volumeName") or pvc.get("metadata", {}).get("deletionTimestamp"):
        return False
    if pvc.get("status", {}).get("phase", "Pending") != "Pending":
        return False
    cls = spec.get("storageClassName")
    return cls == CLASS_NAME or (cls is None and default_class)


def pv_name(pvc: Obj) -> str:
    return f"pvc-{pvc['metadata']['uid']}"


def pv_manifest(pvc: Obj, root: Path) -> dict[str, Any]:
    meta = pvc["metadata"]
    spec = pvc.get("spec", {})
    size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
    name = pv_name(pvc)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def releasable(pv: Obj) -> bool:
    return (
        pv.get("metadata", {}).get("annotations", {}).get(PROVISIONED_BY) == PROVISIONER
        and pv.get("spec", {}).get("persistentVolumeReclaimPolicy") == "Delete"
        and pv.get("status", {}).get("phase") in ("Released", "Failed")
        and not pv.get("metadata", {}).get("deletionTimestamp")
    )


def remove_volume_dir(path: Path, root: Path) -> None:
    """Only directories this provisioner made (children of ROOT) are ever removed."""
    if path.resolve().parent == root.resolve():
        shutil.rmtree(path, ignore_errors=True)


class Provisioner:
    def __init__(self, kube: KubeClient, root: Path) -> None:
        self.kube = kube
        self.root = root
        self.synced = asyncio.Event()

    async def ensure_class(self) -> None:
        if await self.kube.get(f"/apis/storage.k8s.io/v1/storageclasses/{CLASS_NAME}") is None:
            try:
                await self.kube.create("/apis/storage.k8s.io/v1/storageclasses", storage_class())
            except ApiError as e:
                if e.status != 409:
                    raise

    async def on_claim(self, typ: str, pvc: Obj) -> None:
        if typ == "DELETED" or not wants_volume(pvc):
            return
        name = pv_name(pvc)
        # World-writable, as local-path-provisioner makes them: the kubelet applies no fsGroup
        # to hostPath volumes, so a non-root pod (etcd runs as 65532) could not write a root-
        # owned directory.
        (self.root / name).mkdir(parents=True, exist_ok=True)
        (self.root / name).chmod(0o777)
        try:
            await self.kube.create("/api/v1/persistentvolumes", pv_manifest(pvc, self.root))
            log.info(
                "provisioned %s for claim %s/%s",
                name,
                pvc["metadata"]["namespace"],
                pvc["metadata"]["name"],
            )
        except ApiError as e:
            if e.status != 409:
                log.warning(
                    "claim %s/%s: creating %s failed: %s",
                    pvc["metadata"]["namespace"],
                    pvc["metadata"]["name"],
                    name,
                    e,
                )

    async def on_volume(self, typ: str, pv: Obj) -> None:
        if typ == "DELETED" or not releasable(pv):
            return
        name = pv["metadata"]["name"]
        path = pv.get("spec", {}).get("hostPath", {}).get("path", "")
        if path:
            await asyncio.to_thread(remove_volume_dir, Path(path), self.root)
        await self.kube.delete(f"/api/v1/persistentvolumes/{name}")
        log.info("deleted released volume %s", name)

    async def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                await self.ensure_class()
                break
            except (ApiError, httpx.HTTPError, OSError, TimeoutError) as e:
                log.warning("storage class %s: %s; retrying", CLASS_NAME, e)
                await asyncio.sleep(2)
        claims_synced, volumes_synced = asyncio.Event(), asyncio.Event()

        async def mark() -> None:
            await claims_synced.wait()
            await volumes_synced.wait()
            self.synced.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                list_watch(
                    self.kube, "/api/v1/persistentvolumeclaims", self.on_claim, claims_synced
                )
            )
            tg.create_task(
                list_watch(self.kube, "/api/v1/persistentvolumes", self.on_volume, volumes_synced)
            )
            tg.create_task(mark())
