"""The local provisioner's objects: a hostPath PersistentVolume pre-bound to its claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2e.localcluster.kubelet.provisioner import pv_manifest, releasable, wants_volume


def test_provisioner_prebinds_a_hostpath_volume_to_the_claim(tmp_path: Path) -> None:
    pvc: dict[str, Any] = {"metadata": {"name": "data", "namespace": "ns", "uid": "abc"},
           "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "2Gi"}}},
           "status": {"phase": "Pending"}}
    assert wants_volume(pvc)
    pv = pv_manifest(pvc, tmp_path)
    assert pv["metadata"]["name"] == "pvc-abc"
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "pvc-abc")
    assert pv["spec"]["claimRef"]["uid"] == "abc"
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert not wants_volume({**pvc, "spec": {**pvc["spec"], "storageClassName": "other"}})
    assert not wants_volume({**pvc, "spec": {**pvc["spec"], "volumeName": "pv"}})
    released = {**pv, "status": {"phase": "Released"}}
    assert releasable(released)
    assert not releasable({**pv, "status": {"phase": "Bound"}})
