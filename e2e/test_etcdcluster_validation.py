"""Bad EtcdCluster specs are rejected by the API server itself (CRD schema and CEL rules), with a
message naming the field; a good one is accepted and defaulted. Needs only the control plane:
no operator and no nodes run here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    ETCD_VERSION,
    clusters_path,
    delete_namespace,
    etcd_cluster,
    get_cluster,
    new_namespace,
    patch_spec,
)

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
async def ns(etcdcluster_crd: KubeClient) -> AsyncIterator[str]:
    name = await new_namespace(etcdcluster_crd, "ec-validation")
    yield name
    await delete_namespace(etcdcluster_crd, name)


BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, spec fields, field the message must name, words it must say)
    ("size 0", {"size": 0}, "spec.size", "must be between 1 and 9"),
    ("size 12", {"size": 12}, "spec.size", "must be between 1 and 9"),
    ("version 3.6.x", {"version": "3.6.x"}, "spec.version", "full etcd release version"),
    ("version 3.4.30", {"version": "3.4.30"}, "spec.version", "etcd 3.5 or a newer"),
    (
        "both storage kinds",
        {"storage": {"emptyDir": {}, "persistentVolumeClaim": {"size": "1Gi"}}},
        "spec.storage",
        "at most one of emptyDir and persistentVolumeClaim",
    ),
    ("image with a tag", {"image": "quay.io/coreos/etcd:v3.6.16"}, "spec.image", "without tag"),
]


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [pytest.param(s, f, w, id=case) for case, s, f, w in BAD_SPECS],
)
async def test_bad_spec_is_rejected_naming_the_field(
    etcdcluster_crd: KubeClient, ns: str, spec: dict[str, Any], field: str, words: str
) -> None:
    obj = etcd_cluster("bad", ns, size=None)
    obj["spec"].update(spec)
    status, body = await etcdcluster_crd.call("POST", clusters_path(ns), obj)
    message = str(body.get("message", ""))
    assert status == 422, f"expected 422 Invalid, got {status}: {body}"
    assert field in message, f"message does not name {field}: {message}"
    assert words in message, f"message does not say {words!r}: {message}"
    causes = [c.get("field", "") for c in body.get("details", {}).get("causes", [])]
    assert any(c.startswith(field) for c in causes), f"no cause names {field}: {causes}"
    assert await etcdcluster_crd.get(clusters_path(ns, "bad")) is None


async def test_missing_version_is_rejected(etcdcluster_crd: KubeClient, ns: str) -> None:
    obj = etcd_cluster("noversion", ns, size=3)
    del obj["spec"]["version"]
    status, body = await etcdcluster_crd.call("POST", clusters_path(ns), obj)
    assert status == 422, body
    assert "spec.version" in body["message"] and "Required" in body["message"], body["message"]


async def test_good_spec_is_accepted_with_defaults_and_bad_update_rejected(
    etcdcluster_crd: KubeClient, ns: str
) -> None:
    """The control case: a minimal valid spec passes and gets its defaults, so the rejections
    above are about the fields they name; an update to a bad size is refused the same way."""
    name = "validation-good"
    path = clusters_path(ns, name)
    await etcdcluster_crd.delete(path)
    created = await etcdcluster_crd.create(clusters_path(ns), etcd_cluster(name, ns, size=None))
    try:
        assert created["spec"]["size"] == 3, created["spec"]
        assert created["spec"]["version"] == ETCD_VERSION
        assert created["spec"]["paused"] is False, created["spec"]
        status, body = await etcdcluster_crd.call(
            "PATCH", path, {"spec": {"size": 10}}, content_type="application/merge-patch+json"
        )
        assert status == 422, body
        assert "spec.size" in body["message"], body["message"]
        await patch_spec(etcdcluster_crd, name, ns, {"size": 5})
        assert (await get_cluster(etcdcluster_crd, name, ns))["spec"]["size"] == 5
    finally:
        await etcdcluster_crd.delete(path)


async def test_in_place_with_empty_dir_is_rejected_and_defaults_are_surge(
    etcdcluster_crd: KubeClient, ns: str
) -> None:
    obj = etcd_cluster("inplace-emptydir", ns, size=3, upgrade={"strategy": "InPlace"})
    status, body = await etcdcluster_crd.call("POST", clusters_path(ns), obj)
    assert status == 422, body
    assert "InPlace needs spec.storage.persistentVolumeClaim" in body["message"], body
    name = "upgrade-defaults"
    path = clusters_path(ns, name)
    await etcdcluster_crd.delete(path)
    created = await etcdcluster_crd.create(clusters_path(ns), etcd_cluster(name, ns, size=None))
    try:
        assert created["spec"]["upgrade"] == {
            "strategy": "Surge", "memberReadyTimeout": "5m", "backupBeforeUpgrade": True
        }
    finally:
        await etcdcluster_crd.delete(path)


VERSION_CHANGES = [
    # (from, to, words of the refusal, or "" when etcd supports the change)
    ("3.5.35", "3.7.0", "cannot skip a minor version"),
    ("3.7.0", "3.5.35", "more than one minor version"),
    ("3.5.20", "3.6.16", "3.5.32 or later"),
    ("3.5.32", "3.6.16", ""),
    ("3.6.16", "3.5.35", ""),
]


@pytest.mark.parametrize(("old", "new", "words"), VERSION_CHANGES)
async def test_version_changes_etcd_does_not_support_are_refused_at_admission(
    etcdcluster_crd: KubeClient, ns: str, old: str, new: str, words: str
) -> None:
    name = f"version-{old.replace('.', '-')}-{new.replace('.', '-')}"
    path = clusters_path(ns, name)
    await etcdcluster_crd.delete(path)
    await etcdcluster_crd.create(clusters_path(ns), etcd_cluster(name, ns, version=old))
    try:
        status, body = await etcdcluster_crd.call(
            "PATCH", path, {"spec": {"version": new}}, content_type="application/merge-patch+json"
        )
        if words:
            assert status == 422, body
            assert "spec.version" in body["message"] and words in body["message"], body
        else:
            assert status == 200, body
    finally:
        await etcdcluster_crd.delete(path)
