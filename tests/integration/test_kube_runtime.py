"""The rest of the controller runtime against a real API server: Lease leader election, Events,
status through the status subresource, finalizers, ownerReferences and server-side apply."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any, cast

import kr8s.asyncio
import pytest

from etcdop.kube.client import (
    CONFIGMAPS,
    CORE_EVENTS,
    EVENTS,
    LEASES,
    NAMESPACES,
    ConflictError,
    KubeClient,
    NotFoundError,
    Resource,
)
from etcdop.kube.events import EventRecorder
from etcdop.kube.leader import LeaderElector
from etcdop.kube.status import (
    add_finalizer,
    has_finalizer,
    owner_reference,
    patch_status,
    remove_finalizer,
    with_owner,
)
from tests.crds import install_crd
from tests.waiting import eventually

pytestmark = pytest.mark.cluster

WIDGETS = Resource("kuberuntime.etcdop.io", "v1", "widgets", "Widget")
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.kuberuntime.etcdop.io"},
    "spec": {
        "group": "kuberuntime.etcdop.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"},
                        "observedGeneration": {"type": "integer"},
                    }},
                },
            }},
        }],
    },
}

# Short periods keep the test quick; the ratios are those of the defaults.
LEASE = 3.0
RENEW = 2.0
RETRY = 0.4


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> KubeClient:
    return KubeClient(kube_api, timeout=15.0, field_manager="etcdop-test")


@pytest.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    name = f"kube-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACES, name)


# -- leader election ------------------------------------------------------------------------


def elector(kube: KubeClient, namespace: str, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(kube, "etcdop-test", namespace, identity, lease_duration=LEASE,
                         renew_deadline=RENEW, retry_period=RETRY, **kw)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def never_both(a: LeaderElector, b: LeaderElector, seconds: float) -> None:
    """Watch both electors for SECONDS; fail at once if both claim to lead."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        assert not (a.is_leader.is_set() and b.is_leader.is_set()), "two leaders at once"
        await asyncio.sleep(0.05)


def when(micro_time: str) -> float:
    return datetime.strptime(micro_time, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


async def lease_holder(kube: KubeClient, namespace: str) -> str | None:
    lease = await kube.get(LEASES, "etcdop-test", namespace)
    return None if lease is None else lease["spec"].get("holderIdentity") or None


async def test_one_leader_and_a_graceful_handover(kube: KubeClient, namespace: str) -> None:
    events: list[str] = []
    one = elector(kube, namespace, "one", on_started=lambda: events.append("one+"),
                  on_stopped=lambda: events.append("one-"))
    two = elector(kube, namespace, "two", on_started=lambda: events.append("two+"))
    t1 = asyncio.create_task(one.run())
    await asyncio.wait_for(one.is_leader.wait(), 15)
    t2 = asyncio.create_task(two.run())
    # the follower keeps trying for longer than a lease period, and never gets in
    await never_both(one, two, LEASE + 2 * RETRY)
    assert one.is_leader.is_set() and not two.is_leader.is_set()
    assert await lease_holder(kube, namespace) == "one"
    assert two.holder == "one", "the follower knows who leads"

    loop = asyncio.get_running_loop()
    stopped = loop.time()
    await stop(t1)  # a graceful stop hands the lease back
    await asyncio.wait_for(two.is_leader.wait(), LEASE)
    assert loop.time() - stopped < LEASE, "a released lease is taken over at once"
    assert events == ["one+", "one-", "two+"]
    lease = await kube.get(LEASES, "etcdop-test", namespace)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "two"
    assert lease["spec"]["leaseTransitions"] >= 1
    await stop(t2)
    assert await lease_holder(kube, namespace) is None


async def test_a_crashed_leader_is_replaced_after_its_lease_expires(
    kube: KubeClient, namespace: str
) -> None:
    one = elector(kube, namespace, "one", release_on_cancel=False)  # dies without a word
    two = elector(kube, namespace, "two")
    t1 = asyncio.create_task(one.run())
    await asyncio.wait_for(one.is_leader.wait(), 15)
    t2 = asyncio.create_task(two.run())
    await eventually(lambda: two.holder == "one", 10, "the follower to read the lease")
    await stop(t1)
    last = await kube.get(LEASES, "etcdop-test", namespace)
    assert last is not None and last["spec"]["holderIdentity"] == "one", "a crash leaves it held"
    await asyncio.wait_for(two.is_leader.wait(), LEASE + 3 * RETRY + 2)
    taken = await kube.get(LEASES, "etcdop-test", namespace)
    assert taken is not None
    # never before the lease ran out: from the last renewal to the take-over, a lease period
    gap = when(taken["spec"]["acquireTime"]) - when(last["spec"]["renewTime"])
    assert gap >= LEASE, f"took over {gap:.2f}s after the last renewal, before expiry"
    assert await lease_holder(kube, namespace) == "two"
    await stop(t2)


async def test_a_leader_whose_lease_is_taken_steps_down_and_campaigns_again(
    kube: KubeClient, namespace: str
) -> None:
    stopped = asyncio.Event()
    one = elector(kube, namespace, "one", on_stopped=stopped.set)
    t1 = asyncio.create_task(one.run())
    await asyncio.wait_for(one.is_leader.wait(), 15)
    # someone else writes the lease: our next renewal carries a stale resourceVersion (409)
    await kube.patch(LEASES, "etcdop-test", {"spec": {"holderIdentity": "intruder"}}, namespace)
    await asyncio.wait_for(stopped.wait(), RENEW + 2)
    assert not one.is_leader.is_set()
    assert one.holder == "intruder"
    # the intruder never renews: after its lease expires we lead again
    await asyncio.wait_for(one.is_leader.wait(), LEASE + 3 * RETRY + 2)
    assert await lease_holder(kube, namespace) == "one"
    await stop(t1)


async def test_lead_runs_the_work_only_while_leading(kube: KubeClient, namespace: str) -> None:
    active = {"one": 0, "two": 0}
    starts = {"one": 0, "two": 0}

    def work_of(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def work() -> None:
            active[name] += 1
            starts[name] += 1
            try:
                await asyncio.Future()  # the controllers: they run until cancelled
            finally:
                active[name] -= 1

        return work

    one = elector(kube, namespace, "one")
    two = elector(kube, namespace, "two")
    l1 = asyncio.create_task(one.lead(work_of("one")))
    await eventually(lambda: active["one"] == 1, 15, "replica one to start its work")
    l2 = asyncio.create_task(two.lead(work_of("two")))
    loop = asyncio.get_running_loop()
    end = loop.time() + LEASE + 2 * RETRY
    while loop.time() < end:
        assert active == {"one": 1, "two": 0}, "only the leader works"
        await asyncio.sleep(0.05)

    await stop(l1)
    assert active["one"] == 0
    await eventually(lambda: active["two"] == 1, LEASE, "replica two to take over the work")

    # losing the lease stops the work at once; winning it back starts it afresh
    await kube.patch(LEASES, "etcdop-test", {"spec": {"holderIdentity": "intruder"}}, namespace)
    await eventually(lambda: active["two"] == 0, RENEW + 2, "the work to stop on lost lease")
    await eventually(lambda: active["two"] == 1, LEASE + 3 * RETRY + 2, "the work to restart")
    assert starts == {"one": 1, "two": 2}
    await stop(l2)
    assert active == {"one": 0, "two": 0}
    assert await lease_holder(kube, namespace) is None


def test_elector_rejects_inconsistent_periods() -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        # the periods are checked before the client is ever used, so none is needed
        no_client = cast(KubeClient, None)
        LeaderElector(no_client, "l", "ns", "me", lease_duration=5, renew_deadline=10)


# -- events ---------------------------------------------------------------------------------


async def test_events_are_recorded_and_repeats_counted(kube: KubeClient, namespace: str) -> None:
    target = await kube.create(CONFIGMAPS, {"metadata": {"name": "target", "namespace": namespace}})
    target = dict(target, apiVersion="v1", kind="ConfigMap")
    rec = EventRecorder(kube, "etcdop.io/operator", "test-pod")
    await rec.normal(target, "MemberAdded", "member demo-1 added as learner", action="AddMember")
    await rec.normal(target, "MemberAdded", "member demo-1 added as learner", action="AddMember")
    await rec.normal(target, "MemberAdded", "member demo-1 added as learner", action="AddMember")
    await rec.warning(target, "BackupFailed", "upload failed: token=abcd1234 rejected")

    events = (await kube.list(EVENTS, namespace)).items
    by_reason = {e["reason"]: e for e in events}
    assert sorted(by_reason) == ["BackupFailed", "MemberAdded"], "repeats fold into one event"
    added = by_reason["MemberAdded"]
    assert added["type"] == "Normal"
    assert added["note"] == "member demo-1 added as learner"
    assert added["action"] == "AddMember"
    assert added["reportingController"] == "etcdop.io/operator"
    assert added["regarding"]["uid"] == target["metadata"]["uid"]
    assert added["regarding"]["kind"] == "ConfigMap"
    assert added["series"]["count"] == 3
    failed = by_reason["BackupFailed"]
    assert failed["type"] == "Warning"
    assert "abcd1234" not in failed["note"]

    # `kubectl describe` reads the core v1 view of the same events
    core = (await kube.list(CORE_EVENTS, namespace)).items
    assert {(e["reason"], e["involvedObject"]["name"]) for e in core} == {
        ("MemberAdded", "target"), ("BackupFailed", "target")}


async def test_a_failed_event_write_does_not_raise(kube: KubeClient) -> None:
    rec = EventRecorder(kube, "etcdop.io/operator", "test-pod")
    ghost = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "x", "namespace": f"missing-{uuid.uuid4().hex[:6]}", "uid": "u"}}
    await rec.normal(ghost, "Nothing", "the namespace does not exist")  # logged, not raised
    await rec.normal({"metadata": {"name": "no-kind"}}, "Nothing", "no kind")


# -- status, finalizers, owners, apply ------------------------------------------------------


async def widget_crd(kube: KubeClient) -> None:
    await install_crd(kube, WIDGET_CRD)


async def create_widget(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    body = {"apiVersion": "kuberuntime.etcdop.io/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"size": 1}}
    out: dict[str, Any] = {}

    async def created() -> bool:  # a CRD established a moment ago may still answer 404
        try:
            out.update(await kube.create(WIDGETS, body))
        except NotFoundError:
            return False
        return True

    await eventually(created, 30, f"widget {namespace}/{name} to be created")
    return out


async def test_status_patch_sets_observed_generation(kube: KubeClient, namespace: str) -> None:
    await widget_crd(kube)
    w = await create_widget(kube, namespace, "w1")
    assert w["metadata"]["generation"] == 1
    out = await patch_status(kube, WIDGETS, w, {"phase": "Creating"})
    assert out["status"] == {"phase": "Creating", "observedGeneration": 1}
    assert out["spec"] == {"size": 1}

    w2 = await kube.patch(WIDGETS, "w1", {"spec": {"size": 3}}, namespace)
    assert w2["metadata"]["generation"] == 2
    assert w2["status"]["observedGeneration"] == 1, "status lags until the controller catches up"
    out = await patch_status(kube, WIDGETS, w2, {"phase": "Running"}, conditional=True)
    assert out["status"] == {"phase": "Running", "observedGeneration": 2}

    # a status computed from an old version is refused when asked to be conditional
    with pytest.raises(ConflictError, match=re.escape("widgets.kuberuntime.etcdop.io")):
        await patch_status(kube, WIDGETS, w2, {"phase": "Stale"}, conditional=True)
    # and a key set to None goes away
    out = await patch_status(kube, WIDGETS, out, {"phase": None})
    assert out["status"] == {"observedGeneration": 2}


async def test_finalizers_hold_deletion_until_removed(kube: KubeClient, namespace: str) -> None:
    await widget_crd(kube)
    w = await create_widget(kube, namespace, "w2")
    fin = "etcdop.io/backup-cleanup"
    w = await add_finalizer(kube, WIDGETS, w, fin)
    assert has_finalizer(w, fin)
    same = await add_finalizer(kube, WIDGETS, w, fin)
    assert same["metadata"]["resourceVersion"] == w["metadata"]["resourceVersion"], "no-op"
    other = await add_finalizer(kube, WIDGETS, w, "example.com/other")
    with pytest.raises(ConflictError):  # computed from a version that is no longer current
        await remove_finalizer(kube, WIDGETS, w, fin)

    assert await kube.delete(WIDGETS, "w2", namespace)
    deleting = await kube.get(WIDGETS, "w2", namespace)
    assert deleting is not None and deleting["metadata"].get("deletionTimestamp")
    after = await remove_finalizer(kube, WIDGETS, deleting, fin)
    assert after["metadata"]["finalizers"] == ["example.com/other"]
    assert other["metadata"]["finalizers"] == [fin, "example.com/other"]
    await remove_finalizer(kube, WIDGETS, after, "example.com/other")
    assert await kube.get(WIDGETS, "w2", namespace) is None, "the last finalizer lets it go"


async def test_owner_references_apply_and_errors(kube: KubeClient, namespace: str) -> None:
    owner = await kube.create(CONFIGMAPS, {"metadata": {"name": "owner", "namespace": namespace}})
    owner = dict(owner, apiVersion="v1", kind="ConfigMap")
    other = await kube.create(CONFIGMAPS, {"metadata": {"name": "other", "namespace": namespace}})
    manifest = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "child", "namespace": namespace, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "other",
             "uid": other["metadata"]["uid"]}]},
        "data": {"k": "1"},
    }
    applied = await kube.apply(CONFIGMAPS, with_owner(manifest, owner_reference(owner)))
    refs = applied["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["other", "owner"], "the other owner is kept"
    assert {m["manager"] for m in applied["metadata"]["managedFields"]} == {"etcdop-test"}
    again = await kube.apply(CONFIGMAPS, dict(manifest, data={"k": "2"}) | {
        "metadata": with_owner(manifest, owner_reference(owner))["metadata"]})
    assert again["data"] == {"k": "2"}

    assert await kube.get(CONFIGMAPS, "nope", namespace) is None
    assert await kube.delete(CONFIGMAPS, "nope", namespace) is False
    with pytest.raises(ConflictError, match=f"POST configmaps {namespace}"):
        await kube.create(CONFIGMAPS, {"metadata": {"name": "owner", "namespace": namespace}})
    with pytest.raises(NotFoundError, match="nope"):
        await kube.patch(CONFIGMAPS, "nope", {"data": {}}, namespace)
    with pytest.raises(ValueError, match="needs a namespace"):
        await kube.get(CONFIGMAPS, "x")
    # conditional delete: a stale resourceVersion is refused
    with pytest.raises(ConflictError):
        await kube.delete(CONFIGMAPS, "child", namespace, resource_version=applied["metadata"][
            "resourceVersion"])
    assert await kube.delete(CONFIGMAPS, "child", namespace, uid=again["metadata"]["uid"])
    listed = await kube.list(CONFIGMAPS, namespace, page_size=1)
    assert {o["metadata"]["name"] for o in listed.items} >= {"owner", "other"}
    assert listed.resource_version
