"""EtcdCluster as typed Python: defaults, type errors, validation messages, status round trip."""

from __future__ import annotations

from typing import Any

import pytest

from etcdop.api import (
    API_VERSION,
    DEFAULT_IMAGE,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    EtcdCluster,
    EtcdClusterSpec,
    EtcdClusterStatus,
    InvalidObject,
)
from etcdop.api.etcdcluster import Condition, MemberStatus
from etcdop.operator.model import DesiredSpec


def obj(spec: Any, status: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u-1", "generation": 4},
        "spec": spec,
    }
    if status is not None:
        out["status"] = status
    return out


def test_constants() -> None:
    assert (GROUP, VERSION) == ("etcdop.io", "v1alpha1")
    assert (KIND, PLURAL) == ("EtcdCluster", "etcdclusters")
    assert API_VERSION == "etcdop.io/v1alpha1"


def test_defaults_fill_everything_but_version() -> None:
    c = EtcdCluster.from_dict(obj({"version": "3.6.16"}))
    assert (c.name, c.namespace, c.uid, c.generation, c.key) == ("demo", "ns", "u-1", 4, "ns/demo")
    s = c.spec
    assert s.size == 3 and s.paused is False and s.image is None
    assert s.storage.empty_dir is None and not s.storage.uses_claims
    assert s.image_ref == f"{DEFAULT_IMAGE}:v3.6.16"
    assert dict(s.pod_template.node_selector) == {} and s.pod_template.tolerations == ()
    assert c.status == EtcdClusterStatus()
    assert c.validate() == []


def test_a_full_spec_reads_into_types() -> None:
    c = EtcdCluster.from_dict(
        obj(
            {
                "size": 5,
                "version": "3.5.35",
                "image": "registry.local:5000/etcd",
                "storage": {"persistentVolumeClaim": {"size": "10Gi", "storageClassName": "fast"}},
                "resources": {"requests": {"cpu": "100m"}},
                "podTemplate": {
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                    "affinity": {"podAntiAffinity": {}},
                    "labels": {"team": "db"},
                    "annotations": {"a": "b"},
                    "priorityClassName": "high",
                },
                "paused": True,
            }
        )
    )
    s = c.spec
    assert s.image_ref == "registry.local:5000/etcd:v3.5.35"
    pvc = s.storage.persistent_volume_claim
    assert pvc is not None and (pvc.size, pvc.storage_class_name) == ("10Gi", "fast")
    assert s.storage.uses_claims
    assert s.resources == {"requests": {"cpu": "100m"}}
    assert s.pod_template.tolerations == ({"key": "k", "operator": "Exists"},)
    assert s.pod_template.priority_class_name == "high" and s.paused
    assert c.validate() == []


def test_wrong_types_name_every_field() -> None:
    with pytest.raises(InvalidObject) as e:
        EtcdCluster.from_dict(
            obj(
                {
                    "size": "three",
                    "paused": "yes",
                    "podTemplate": {"labels": {"a": 1}, "tolerations": {}},
                    "storage": {"persistentVolumeClaim": {}},
                }
            )
        )
    text = [str(x) for x in e.value.errors]
    assert "spec.size: must be an integer, got string" in text
    assert "spec.version: is required" in text
    assert "spec.paused: must be a boolean, got string" in text
    assert "spec.podTemplate.labels.a: must be a string, got integer" in text
    assert "spec.podTemplate.tolerations: must be an array, got object" in text
    assert "spec.storage.persistentVolumeClaim.size: is required" in text
    assert str(e.value).startswith("invalid EtcdCluster: ")


def test_a_missing_spec_is_named() -> None:
    with pytest.raises(InvalidObject, match=r"spec: must be an object, got null"):
        EtcdCluster.from_dict({"metadata": {"name": "x"}})


def test_a_boolean_is_not_an_integer() -> None:
    with pytest.raises(InvalidObject, match=r"spec\.size: must be an integer, got boolean"):
        EtcdCluster.from_dict(obj({"size": True, "version": "3.6.16"}))


def errors_of(spec: dict[str, Any]) -> list[str]:
    return [str(e) for e in EtcdCluster.from_dict(obj(spec)).validate()]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"size": 12, "version": "3.6.16"}, "spec.size: must be between 1 and 9, got 12"),
        ({"size": 0, "version": "3.6.16"}, "spec.size: must be between 1 and 9, got 0"),
        (
            {"version": "3.6.x"},
            "spec.version: must be a full etcd release version such as 3.6.16 (no 'v' prefix, "
            "no wildcard), got '3.6.x'",
        ),
        (
            {"version": "v3.6.16"},
            "spec.version: must be a full etcd release version such as 3.6.16 (no 'v' prefix, "
            "no wildcard), got 'v3.6.16'",
        ),
        (
            {"version": "3.4.30"},
            "spec.version: etcd 3.5 or a newer 3.x release is required, got '3.4.30'",
        ),
        (
            {"version": "3.6.16", "image": "quay.io/coreos/etcd:v3.6.16"},
            "spec.image: must be an image repository without tag or digest, such as "
            "gcr.io/etcd-development/etcd (the tag is always v<spec.version>), "
            "got 'quay.io/coreos/etcd:v3.6.16'",
        ),
        (
            {"version": "3.6.16", "image": "quay.io/coreos/etcd@sha256:abc"},
            "spec.image: must be an image repository without tag or digest, such as "
            "gcr.io/etcd-development/etcd (the tag is always v<spec.version>), "
            "got 'quay.io/coreos/etcd@sha256:abc'",
        ),
        (
            {"version": "3.6.16", "storage": {"persistentVolumeClaim": {"size": "ten gigs"}}},
            "spec.storage.persistentVolumeClaim.size: must be a positive Kubernetes quantity "
            "such as 10Gi, got 'ten gigs'",
        ),
        (
            {"version": "3.6.16", "storage": {"persistentVolumeClaim": {"size": "0"}}},
            "spec.storage.persistentVolumeClaim.size: must be a positive Kubernetes quantity "
            "such as 10Gi, got '0'",
        ),
        (
            {
                "version": "3.6.16",
                "storage": {"emptyDir": {}, "persistentVolumeClaim": {"size": "1Gi"}},
            },
            "spec.storage: set at most one of emptyDir and persistentVolumeClaim",
        ),
        (
            {"version": "3.6.16", "storage": {"emptyDir": {"medium": "Disk"}}},
            "spec.storage.emptyDir.medium: must be one of '', 'Memory', got 'Disk'",
        ),
        (
            {"version": "3.6.16", "storage": {"emptyDir": {"sizeLimit": "-1Gi"}}},
            "spec.storage.emptyDir.sizeLimit: must be a positive Kubernetes quantity such as "
            "10Gi, got '-1Gi'",
        ),
        (
            {"version": "3.6.16", "podTemplate": {"priorityClassName": "p" * 254}},
            "spec.podTemplate.priorityClassName: must be at most 253 characters long",
        ),
    ],
)
def test_validation_names_the_field_and_the_rule(spec: dict[str, Any], expected: str) -> None:
    # The same words the API server gives at admission (it adds the value its own way).
    assert errors_of(spec) == [expected]


@pytest.mark.parametrize(
    "spec",
    [
        {"version": "3.6.0-rc.1", "size": 5, "image": "localhost:5000/etcd"},
        {"version": "3.5.35", "size": 1},
        {"version": "3.6.16", "size": 9, "storage": {"emptyDir": {"sizeLimit": "512Mi"}}},
        {"version": "3.10.0", "storage": {"persistentVolumeClaim": {"size": "1.5e9"}}},
    ],
)
def test_good_specs_pass(spec: dict[str, Any]) -> None:
    assert errors_of(spec) == []


def test_status_round_trips_through_json() -> None:
    status = EtcdClusterStatus(
        phase="Running",
        observed_generation=4,
        cluster_id="cdf818194e3a8c32",
        members=(
            MemberStatus(
                name="demo-abcde", id="8e9e05c52164694d", version="3.6.16", ready=True,
                is_leader=True,
            ),
        ),
        ready_members=1,
        current_version="3.6.16",
        client_endpoints=("http://demo-client.ns.svc:2379",),
        conditions=(
            Condition(
                type="Available", status="True", reason="QuorumHealthy", message="ok",
                last_transition_time="2026-11-27T02:00:00Z", observed_generation=4,
            ),
        ),
    )
    data = status.to_dict()
    assert data["clusterID"] == "cdf818194e3a8c32"
    assert data["members"][0] == {
        "name": "demo-abcde", "id": "8e9e05c52164694d", "version": "3.6.16", "ready": True,
        "isLeader": True, "isLearner": False,
    }
    assert data["conditions"][0]["lastTransitionTime"] == "2026-11-27T02:00:00Z"
    assert data["clientEndpoints"] == ["http://demo-client.ns.svc:2379"]
    c = EtcdCluster.from_dict(obj({"version": "3.6.16"}, status=data))
    assert c.status == status


def test_an_unreadable_status_reads_as_empty() -> None:
    c = EtcdCluster.from_dict(obj({"version": "3.6.16"}, status={"readyMembers": "lots"}))
    assert c.status == EtcdClusterStatus()


def test_the_planner_reads_the_spec_it_needs() -> None:
    spec = EtcdClusterSpec.from_dict(
        {"size": 5, "version": "3.5.35", "storage": {"persistentVolumeClaim": {"size": "1Gi"}}}
    )
    assert DesiredSpec.of(spec) == DesiredSpec(
        size=5, version="3.5.35", paused=False, uses_claims=True, quota_bytes=2 * 2**30
    )


def test_spec_validate_is_available_on_the_spec_alone() -> None:
    spec = EtcdClusterSpec(size=10, version="3.6.16")
    assert [str(e) for e in spec.validate()] == ["spec.size: must be between 1 and 9, got 10"]


def test_deletion_is_seen() -> None:
    data = obj({"version": "3.6.16"})
    data["metadata"]["deletionTimestamp"] = "2026-11-27T02:00:00Z"
    assert EtcdCluster.from_dict(data).being_deleted
