"""Probes' threshold counting, volume file layout and the provisioner's objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.localcluster.node.pods import PodFacts
from e2e.localcluster.node.probes import Probe, ProbeCounter, resolve_port
from e2e.localcluster.node.provisioner import pv_manifest, releasable, wants_volume
from e2e.localcluster.node.volumes import (
    VolumeNotReady,
    container_mounts,
    downward_files,
    key_files,
)


def test_readiness_needs_success_threshold_and_flips_after_failures() -> None:
    probe = Probe.from_spec({"httpGet": {"port": 80}, "successThreshold": 2,
                             "failureThreshold": 2})
    assert probe is not None
    c = ProbeCounter(probe, initial=False)
    assert c.observe(True) is False
    assert c.observe(True) is True
    assert c.observe(False) is True
    assert c.observe(False) is False
    assert c.failed


def test_probe_defaults_and_named_ports() -> None:
    p = Probe.from_spec({"tcpSocket": {"port": "client"}})
    assert p is not None and (p.period, p.timeout, p.failure_threshold) == (10, 1, 3)
    container = {"name": "etcd", "ports": [{"name": "client", "containerPort": 2379}]}
    assert resolve_port("client", container) == 2379
    with pytest.raises(ValueError, match="'peer' names no port of container 'etcd'"):
        resolve_port("peer", container)


def test_key_files_all_keys_or_items() -> None:
    data = {"a": b"1", "b": b"2"}
    assert key_files(data, None, 0o644, "secret x", False) == {"a": (b"1", 0o644),
                                                               "b": (b"2", 0o644)}
    assert key_files(data, [{"key": "b", "path": "dir/b.txt", "mode": 0o600}], 0o644,
                     "secret x", False) == {"dir/b.txt": (b"2", 0o600)}
    with pytest.raises(VolumeNotReady, match="secret x has no key 'c'"):
        key_files(data, [{"key": "c"}], 0o644, "secret x", False)


def test_downward_files() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"a": "b"}},
           "spec": {"containers": []}}
    files = downward_files(pod, [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                                 {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}],
                           PodFacts("1.2.3.4", "1.1.1.1", "n0"), 0o644)
    assert files == {"ns": (b"n", 0o644), "labels": (b'a="b"', 0o644)}


def test_container_mounts_with_subpath(tmp_path: Path) -> None:
    c = {"name": "c", "volumeMounts": [
        {"name": "data", "mountPath": "/var/lib/etcd", "subPath": "member"},
        {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}]}
    mounts = container_mounts(c, {"data": str(tmp_path / "d"), "cfg": str(tmp_path / "c")}, {})
    assert [(m.source, m.target, m.read_only) for m in mounts] == [
        (str(tmp_path / "d" / "member"), "/var/lib/etcd", False),
        (str(tmp_path / "c"), "/etc/cfg", True)]
    assert (tmp_path / "d" / "member").is_dir()
    with pytest.raises(VolumeNotReady, match="mounts volume 'x' that the pod lacks"):
        container_mounts({"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {},
                         {})


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
