"""The Manager against a real API server: two controllers sharing an informer, owned objects
waking their owner (by ownerReference and by label), the cache-sync timeout handing the lease
back, and a lost lease stopping workers, informers and in-flight reconciles."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kr8s.asyncio
import pytest
from prometheus_client import REGISTRY

from etcdop.kube.client import CONFIGMAPS, LEASES, NAMESPACES, SECRETS, KubeClient, Resource
from etcdop.kube.informer import CacheSyncError
from etcdop.kube.leader import LeaderElector
from etcdop.kube.manager import Controller, Manager, owns
from tests.crds import install_crd
from tests.integration.test_kube_runtime import WIDGET_CRD, WIDGETS, create_widget
from tests.waiting import eventually

pytestmark = pytest.mark.cluster

PARENT = "example.com/parent"
LEASE, RENEW, RETRY = 3.0, 2.0, 0.4  # short periods, in the ratios of the defaults
SYNC = 3.0


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> KubeClient:
    return KubeClient(kube_api, timeout=15.0)


@pytest.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    name = f"mgr-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACES, name)


def elector(kube: KubeClient, namespace: str) -> LeaderElector:
    return LeaderElector(kube, "etcdop-mgr", namespace, "one", lease_duration=LEASE,
                         renew_deadline=RENEW, retry_period=RETRY)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def recording(seen: list[str], fail_once: str = "") -> Callable[[str], Awaitable[float | None]]:
    """A reconcile that notes each key; FAIL_ONCE raises the first time it comes."""
    failed: set[str] = set()

    async def reconcile(key: str) -> float | None:
        seen.append(key)
        if key == fail_once and key not in failed:
            failed.add(key)
            raise RuntimeError(f"{key}: failing once on purpose")
        return None

    return reconcile


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_two_controllers_share_an_informer_and_owned_objects_wake_their_owner(
    kube: KubeClient, namespace: str
) -> None:
    await install_crd(kube, WIDGET_CRD)
    widgets: list[str] = []
    maps: list[str] = []
    mgr = Manager(kube, namespace=namespace, cache_sync_timeout=30)
    mgr.register(Controller("widgets", WIDGETS, recording(widgets),
                            owns=[owns(CONFIGMAPS, owner=WIDGETS)]))
    mgr.register(Controller("maps", CONFIGMAPS, recording(maps, f"{namespace}/flaky"),
                            owns=[owns(SECRETS, label=PARENT)], workers=2))
    assert sorted(r.plural for r, _ in mgr.informers) == ["configmaps", "secrets", "widgets"], (
        "one ConfigMap informer for the owned kind of one and the primary of the other")
    ok_before = sample("etcdop_reconcile_total", kind="ConfigMap", result="ok")
    errors_before = sample("etcdop_reconcile_errors_total", kind="ConfigMap")
    task = asyncio.create_task(mgr.run())
    try:
        widget = await create_widget(kube, namespace, "w1")
        await eventually(lambda: f"{namespace}/w1" in widgets, 15, "the widget's reconcile")

        # a ConfigMap the widget controls wakes the widget (and is a primary of its own)
        woken = len(widgets)
        ref = {"apiVersion": WIDGETS.api_version, "kind": "Widget", "name": "w1",
               "uid": widget["metadata"]["uid"], "controller": True}
        await kube.create(CONFIGMAPS, {"metadata": {
            "name": "child", "namespace": namespace, "ownerReferences": [ref]}})
        await eventually(lambda: f"{namespace}/w1" in widgets[woken:], 15, "the owner woken")
        await eventually(lambda: f"{namespace}/child" in maps, 15, "the ConfigMap's reconcile")

        # a Secret labelled with a ConfigMap's name wakes that ConfigMap, not the widget
        woken_maps = maps.count(f"{namespace}/child")
        await kube.create(SECRETS, {"metadata": {
            "name": "s1", "namespace": namespace, "labels": {PARENT: "child"}}})
        await eventually(lambda: maps.count(f"{namespace}/child") > woken_maps, 15,
                         "the labelled owner woken")
        assert all(key == f"{namespace}/w1" for key in widgets), widgets

        # a reconcile that raises is counted and retried
        await kube.create(CONFIGMAPS, {"metadata": {"name": "flaky", "namespace": namespace}})
        await eventually(lambda: maps.count(f"{namespace}/flaky") == 2, 15, "the retry")
        queue = mgr.queue("maps")
        assert queue is not None and not queue.shutting_down
    finally:
        await stop(task)
    assert sample("etcdop_reconcile_errors_total", kind="ConfigMap") == errors_before + 1
    ok = sample("etcdop_reconcile_total", kind="ConfigMap", result="ok") - ok_before
    assert ok == len(maps) - 1, f"{ok} ok reconciles counted for {maps}"
    assert sample("etcdop_reconcile_duration_seconds_count", kind="Widget") >= len(widgets)
    assert mgr.queue("maps") is None, "the queues end with the term"


async def test_a_cache_that_cannot_sync_hands_the_lease_back_naming_it(
    kube: KubeClient, namespace: str
) -> None:
    unserved = Resource("nothere.etcdop.io", "v1", "gizmos", "Gizmo")
    seen: list[str] = []
    mgr = Manager(kube, namespace=namespace, cache_sync_timeout=SYNC)
    mgr.register(Controller("gizmos", unserved, recording(seen),
                            owns=[owns(CONFIGMAPS, owner=unserved)]))
    await kube.create(CONFIGMAPS, {"metadata": {"name": "present", "namespace": namespace}})
    leader = elector(kube, namespace)
    with pytest.raises(CacheSyncError) as raised:
        await asyncio.wait_for(mgr.lead(leader), SYNC + 15)
    gizmos = mgr.informer(unserved)
    assert raised.value.informers == [str(gizmos)], "the ConfigMap informer synced"
    assert str(raised.value) == (
        f"informer for gizmos (nothere.etcdop.io/v1) in namespace {namespace}: list failed "
        "(404 Unknown); the server does not serve gizmos of nothere.etcdop.io/v1: install its CRD"
    )
    assert mgr.informer(CONFIGMAPS).synced.is_set()
    assert seen == [], "no reconcile before the caches sync"
    assert not leader.is_leader.is_set()
    lease = await kube.get(LEASES, "etcdop-mgr", namespace)
    assert lease is not None and not lease["spec"].get("holderIdentity"), "lease handed back"


async def test_losing_the_lease_stops_workers_and_informers_and_winning_it_restarts_them(
    kube: KubeClient, namespace: str
) -> None:
    await kube.create(CONFIGMAPS, {"metadata": {"name": "held", "namespace": namespace}})
    state: dict[str, Any] = {"active": 0, "starts": 0, "cancelled": 0}

    async def reconcile(key: str) -> float | None:
        state["active"] += 1
        state["starts"] += 1
        try:
            await asyncio.Future()  # a reconcile that is in flight when the lease goes
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        finally:
            state["active"] -= 1
        return None

    mgr = Manager(kube, namespace=namespace, cache_sync_timeout=30)
    mgr.register(Controller("held", CONFIGMAPS, reconcile))
    informer = mgr.informer(CONFIGMAPS)

    def informer_running() -> bool:
        return any(t.get_name() == str(informer) and not t.done() for t in asyncio.all_tasks())

    task = asyncio.create_task(mgr.lead(elector(kube, namespace)))
    try:
        await eventually(lambda: state["active"] == 1, 15, "the reconcile to start")
        assert informer_running()
        await kube.patch(LEASES, "etcdop-mgr", {"spec": {"holderIdentity": "intruder"}},
                         namespace)
        await eventually(lambda: state["active"] == 0, RENEW + 2, "the reconcile to stop")
        assert state["cancelled"] == 1
        assert mgr.queue("held") is None, "the term's queue is gone"
        assert not informer_running(), "the informers stop with the workers"
        # the intruder never renews: we lead again, relist, and the held key is looked at again
        await eventually(lambda: state["active"] == 1, LEASE + 3 * RETRY + 5, "a new term")
        assert state["starts"] == 2
        assert informer_running()
    finally:
        await stop(task)
    assert state["active"] == 0
