"""An EtcdCluster's components (client and peer Services, PodDisruptionBudget) against a real API
server: created when missing, corrected when they drift, and not written when unchanged, with
writes counted by each object's resourceVersion."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
import yaml

from etcdop.api import EtcdCluster
from etcdop.kube.client import NAMESPACES, PDBS, SERVICES, KubeClient, NotFoundError
from etcdop.kube.informer import Informer, wait_for_sync
from etcdop.kube.store import Store
from etcdop.operator import manifests
from etcdop.operator.etcdcluster import ETCDCLUSTERS, MANAGED, Caches, components
from tests.crds import install_crd
from tests.waiting import eventually

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> KubeClient:
    return KubeClient(kube_api, timeout=15.0)  # the operator's own field manager, "etcdop"


@pytest.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    name = f"comp-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACES, name)


async def etcd_cluster(kube: KubeClient, namespace: str) -> dict[str, Any]:
    """A real EtcdCluster (no operator runs here), so that the owner references resolve and the
    garbage collector leaves the components alone."""
    crd = yaml.safe_load((REPO / "crds" / "etcdclusters.etcdop.io.yaml").read_text())
    await install_crd(kube, crd)
    body = {"apiVersion": ETCDCLUSTERS.api_version, "kind": "EtcdCluster",
            "metadata": {"name": "demo", "namespace": namespace},
            "spec": {"size": 3, "version": "3.6.16"}}
    out: dict[str, Any] = {}

    async def created() -> bool:
        try:
            out.update(await kube.create(ETCDCLUSTERS, body))
        except NotFoundError:  # a CRD established a moment ago may still answer 404
            return False
        return True

    await eventually(created, 30, "the EtcdCluster to be created")
    return out


async def versions(kube: KubeClient, namespace: str) -> dict[str, str]:
    """resourceVersion of each component, as the API server has it once settled.

    The disruption controller writes the budget's status after each spec change, which moves its
    resourceVersion; we read it only after that write, so a later change is ours."""

    async def budget_settled() -> bool:
        pdb = await kube.get(PDBS, "demo-quorum", namespace)
        assert pdb is not None, "poddisruptionbudgets/demo-quorum is missing"
        observed = pdb.get("status", {}).get("observedGeneration")
        return bool(observed == pdb["metadata"]["generation"])

    await eventually(budget_settled, 30, "the disruption controller to observe demo-quorum")
    out = {}
    for res, name in ((SERVICES, "demo-peer"), (SERVICES, "demo-client"), (PDBS, "demo-quorum")):
        obj = await kube.get(res, name, namespace)
        assert obj is not None, f"{res.plural}/{name} is missing"
        out[name] = str(obj["metadata"]["resourceVersion"])
    return out


async def cached(store: Store, namespace: str, name: str, rv: str) -> None:
    """Wait for the informer to show the object at RV (a sync reads the cache, not the server)."""

    def at_rv() -> bool:
        obj = store.get_by(namespace, name)
        return obj is not None and obj["metadata"]["resourceVersion"] == rv

    await eventually(at_rv, 15, f"the cache to show {name} at {rv}")


async def test_components_are_created_kept_without_writes_and_corrected(
    kube: KubeClient, namespace: str
) -> None:
    raw = await etcd_cluster(kube, namespace)
    ec = EtcdCluster.from_dict(raw)
    services = Informer(kube, SERVICES, namespace=namespace, label_selector=MANAGED)
    pdbs = Informer(kube, PDBS, namespace=namespace, label_selector=MANAGED)
    tasks = [services.start(), pdbs.start()]
    try:
        await wait_for_sync([services, pdbs], 15)
        caches = Caches(clusters=Store(), pods=Store(), claims=Store(),
                        services=services.store, pdbs=pdbs.store)
        parts = components.components(caches)

        # missing: each is created, under the operator's field manager
        assert await components.sync(kube, ec, parts) is None
        created = await versions(kube, namespace)
        peer = await kube.get(SERVICES, "demo-peer", namespace)
        assert peer is not None
        assert "etcdop" in {m["manager"] for m in peer["metadata"]["managedFields"]}
        assert peer["spec"]["publishNotReadyAddresses"] is True
        for name, rv in created.items():
            await cached(services.store if name != "demo-quorum" else pdbs.store,
                         namespace, name, rv)

        # unchanged: no write at all
        assert [await p.sync(kube, p.render(ec)) for p in parts] == [False, False, False]
        assert await components.sync(kube, ec, parts) is None
        assert await versions(kube, namespace) == created, "an unchanged object was written"

        # drift: another writer changes a field we render; the next sync takes it back
        drifted = await kube.patch(SERVICES, "demo-peer",
                                   {"spec": {"publishNotReadyAddresses": False}}, namespace)
        await cached(services.store, namespace, "demo-peer",
                     drifted["metadata"]["resourceVersion"])
        assert [await p.sync(kube, p.render(ec)) for p in parts] == [True, False, False]
        fixed = await kube.get(SERVICES, "demo-peer", namespace)
        assert fixed is not None and fixed["spec"]["publishNotReadyAddresses"] is True
        after = await versions(kube, namespace)
        assert after["demo-peer"] != drifted["metadata"]["resourceVersion"]
        assert {k: v for k, v in after.items() if k != "demo-peer"} == {
            k: v for k, v in created.items() if k != "demo-peer"}, "only the drifted one written"
        await cached(services.store, namespace, "demo-peer", after["demo-peer"])

        # the spec changes: the budget follows spec.size, nothing else is written
        bigger = EtcdCluster.from_dict(dict(raw, spec=dict(raw["spec"], size=5)))
        assert manifests.pod_disruption_budget(bigger)["spec"]["maxUnavailable"] == 2
        assert await components.sync(kube, bigger, parts) is None
        resized = await versions(kube, namespace)
        assert resized["demo-quorum"] != after["demo-quorum"]
        assert resized["demo-peer"] == after["demo-peer"]
        assert resized["demo-client"] == after["demo-client"]
        pdb = await kube.get(PDBS, "demo-quorum", namespace)
        assert pdb is not None and pdb["spec"]["maxUnavailable"] == 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_refused_component_is_reported_not_raised(
    kube: KubeClient, namespace: str
) -> None:
    """The reconcile goes on (members matter more) and says what the API server refused."""
    raw = await etcd_cluster(kube, namespace)
    ec = EtcdCluster.from_dict(raw)
    caches = Caches(clusters=Store(), pods=Store(), claims=Store(), services=Store(),
                    pdbs=Store())
    bad = components.components(caches)[:1]
    broken = type(bad[0])(bad[0].res, bad[0].cache,
                          lambda e: dict(manifests.client_service(e), spec={"ports": []}))
    refused = await components.sync(kube, ec, (broken,))
    assert refused is not None
    assert refused.startswith("KubernetesRefused: Service demo-client: ")
    assert "422" in refused
