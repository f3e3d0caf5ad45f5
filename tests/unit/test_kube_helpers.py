"""Pure helpers of the controller runtime: backoff, owner references, event hygiene, handlers."""

from __future__ import annotations

from typing import Any

import pytest

from etcdop.kube.backoff import Backoff
from etcdop.kube.client import (
    ApiError,
    ConflictError,
    GoneError,
    NotFoundError,
    api_error,
    micro_time,
    retry_delay,
)
from etcdop.kube.events import NOTE_LIMIT, object_reference, redact, truncate
from etcdop.kube.informer import (
    drop_managed_fields,
    enqueue_by_label,
    enqueue_object,
    enqueue_owner,
)
from etcdop.kube.status import controller_of, is_owned_by, owner_reference, with_owner
from etcdop.kube.store import Change

CLUSTER = {
    "apiVersion": "etcdop.io/v1alpha1",
    "kind": "EtcdCluster",
    "metadata": {"name": "demo", "namespace": "ns1", "uid": "uid-demo", "resourceVersion": "7"},
}


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(base=0.5, cap=4.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


@pytest.mark.parametrize("r", [0.0, 0.5, 0.999])
def test_backoff_jitter_stays_within_its_spread_and_the_cap(r: float) -> None:
    b = Backoff(base=1.0, cap=3.0, jitter=0.2, rand=lambda: r)
    delays = [b.next() for _ in range(5)]
    assert 0.8 <= delays[0] <= 1.2
    assert all(0 <= d <= 3.0 for d in delays)
    for _ in range(5000):
        b.next()
    assert b.next() <= 3.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base=0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)


def test_micro_time_is_rfc3339_with_microseconds() -> None:
    from datetime import UTC, datetime

    assert micro_time(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"


def test_owner_reference_names_the_owner_and_makes_it_controller() -> None:
    assert owner_reference(CLUSTER) == {
        "apiVersion": "etcdop.io/v1alpha1", "kind": "EtcdCluster", "name": "demo",
        "uid": "uid-demo", "controller": True, "blockOwnerDeletion": True,
    }


def test_owner_reference_needs_a_uid() -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
    with pytest.raises(ValueError, match=r"n/p.*uid"):
        owner_reference(manifest)


def test_with_owner_adds_without_dropping_other_owners_or_mutating() -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "uid-x"}
    pod: dict[str, Any] = {"metadata": {"name": "demo-1", "ownerReferences": [other]}}
    out = with_owner(pod, owner_reference(CLUSTER))
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["uid-x", "uid-demo"]
    assert pod["metadata"]["ownerReferences"] == [other], "the input is left alone"
    again = with_owner(out, owner_reference(CLUSTER))
    assert [r["uid"] for r in again["metadata"]["ownerReferences"]] == ["uid-x", "uid-demo"]
    assert controller_of(again) == owner_reference(CLUSTER)
    assert is_owned_by(again, CLUSTER)
    assert not is_owned_by(pod, CLUSTER)


def test_with_owner_refuses_a_second_controller() -> None:
    pod = with_owner({"metadata": {"name": "p"}}, owner_reference(CLUSTER))
    rival = dict(CLUSTER, metadata=dict(CLUSTER["metadata"], name="rival", uid="uid-rival"))
    with pytest.raises(ValueError, match="already controlled by EtcdCluster demo"):
        with_owner(pod, owner_reference(rival))
    assert len(with_owner(pod, owner_reference(rival, controller=False))["metadata"][
        "ownerReferences"]) == 2


@pytest.mark.parametrize(
    ("message", "leak"),
    [
        ("login failed: password=hunter2 for root", "hunter2"),
        ("sent Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("token: s3cr3t-t0k3n", "s3cr3t-t0k3n"),
        ("access_key=AKIAXYZ secret=zzz", "AKIAXYZ"),
    ],
)
def test_redact_blanks_values_after_secretish_words(message: str, leak: str) -> None:
    out = redact(message)
    assert leak not in out
    assert "<redacted>" in out


def test_redact_leaves_ordinary_messages_alone() -> None:
    msg = "member demo-2 (id 8e9e05c52164694d) added as learner; 2/3 ready"
    assert redact(msg) == msg


def test_truncate_respects_the_byte_limit_without_splitting_characters() -> None:
    long = "é" * 2000
    out = truncate(long)
    assert len(out.encode()) <= NOTE_LIMIT
    assert out.endswith("...")
    assert truncate("short") == "short"


def test_object_reference_needs_kind_and_api_version() -> None:
    assert object_reference(CLUSTER) == {
        "apiVersion": "etcdop.io/v1alpha1", "kind": "EtcdCluster", "name": "demo",
        "namespace": "ns1", "uid": "uid-demo", "resourceVersion": "7",
    }
    with pytest.raises(ValueError, match="ns1/demo has no apiVersion or kind"):
        object_reference({"metadata": CLUSTER["metadata"]})


def pod(name: str, owner: str | None, label: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns1", "uid": f"u-{name}"}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "etcdop.io/v1alpha1", "kind": "EtcdCluster", "name": owner,
             "uid": "x", "controller": True},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-me", "uid": "y",
             "controller": False},
        ]
    if label:
        meta["labels"] = {"etcdop.io/cluster": label}
    return {"metadata": meta}


def test_enqueue_owner_wakes_the_controlling_owner_before_and_after() -> None:
    added: list[str] = []
    handler = enqueue_owner(added.append, "EtcdCluster", "etcdop.io")
    handler(Change("added", pod("p1", "demo")))
    handler(Change("updated", pod("p1", "other"), pod("p1", "demo")))
    handler(Change("deleted", pod("p2", None)))
    assert added == ["ns1/demo", "ns1/other", "ns1/demo"]
    wrong_group: list[str] = []
    enqueue_owner(wrong_group.append, "EtcdCluster", "example.com")(
        Change("added", pod("p1", "demo")))
    assert wrong_group == []


def test_enqueue_object_and_by_label() -> None:
    added: list[str] = []
    enqueue_object(added.append)(Change("deleted", pod("p1", None)))
    enqueue_by_label(added.append, "etcdop.io/cluster")(Change("added", pod("p2", None, "demo")))
    enqueue_by_label(added.append, "etcdop.io/cluster")(Change("added", pod("p3", None)))
    assert added == ["ns1/p1", "ns1/demo"]


@pytest.mark.parametrize(
    ("method", "code", "retry_after", "expected"),
    [
        ("POST", 429, 3.0, 3.0),  # throttled: nothing happened, so even a create is retried
        ("GET", 429, None, 0.5),
        ("GET", 503, None, 0.5),
        ("PATCH", 500, 1.5, 1.5),  # the server's Retry-After wins over our backoff
        ("DELETE", 504, None, 0.5),
        ("POST", 503, None, None),  # a create may have happened: the caller decides
        ("GET", 404, None, None),
        ("PUT", 409, None, None),
        ("GET", 403, None, None),
        ("GET", 501, None, None),
    ],
)
def test_retry_delay_retries_only_what_is_safe_and_honours_retry_after(
    method: str, code: int, retry_after: float | None, expected: float | None
) -> None:
    assert retry_delay(method, code, retry_after, Backoff(base=0.5, jitter=0.0)) == expected


def test_api_errors_are_typed_by_code_and_name_the_object() -> None:
    status = {"kind": "Status", "code": 409, "reason": "Conflict",
              "message": "the object has been modified"}
    err = api_error(status, 500, "PUT leases ns1/etcdop")
    assert isinstance(err, ConflictError)
    assert str(err) == "PUT leases ns1/etcdop: 409 Conflict: the object has been modified"
    gone = api_error({"code": 410, "reason": "Expired", "message": "too old resource version"},
                     200, "watch pods")
    assert isinstance(gone, GoneError)
    throttled = api_error({"code": 429, "reason": "TooManyRequests", "message": "storage is "
                           "(re)initializing", "details": {"retryAfterSeconds": 1}}, 429, "GET x")
    assert type(throttled) is ApiError and throttled.retry_after == 1.0
    assert isinstance(api_error({}, 404, "GET pods ns1/p"), NotFoundError)


def test_drop_managed_fields_keeps_everything_else() -> None:
    obj = {"metadata": {"name": "a", "labels": {"x": "1"}, "managedFields": [{"manager": "m"}]},
           "data": {"k": "v"}}
    assert drop_managed_fields(obj) == {"metadata": {"name": "a", "labels": {"x": "1"}},
                                        "data": {"k": "v"}}
    assert drop_managed_fields({"kind": "X"}) == {"kind": "X"}
