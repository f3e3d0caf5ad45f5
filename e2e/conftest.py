"""Fixtures of the EtcdCluster scenarios: the CRD, the operator process, a namespace per module.

An `operator` runs per test module (so a module that runs its own replicas, like the leader
election scenario, has no other operator beside them) and takes its leader Lease in a namespace
of its own, so one module's operator never waits for the lease of the module before.

Every namespace a module creates is registered with `module_namespaces`, whose teardown waits
until they are all gone: the next module then starts on a machine without the last one's pods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

import kr8s.asyncio
import pytest

from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet.fixtures import LocalNode
from e2e.operator import (
    LIVE_OPERATORS,
    OperatorProcess,
    Operators,
    delete_namespace,
    install_crd,
    new_namespace,
    product_image,
    wait_lease_holder,
    wait_namespaces_gone,
)

NAMESPACES_GONE_WITHIN = 180.0  # pods get their grace period, then the namespace controller


@pytest.fixture(scope="session")
async def kube(kube_api: kr8s.asyncio.Api) -> KubeClient:
    return KubeClient(kube_api)


@pytest.fixture(scope="session")
async def etcdcluster_crd(kube: KubeClient) -> KubeClient:
    """The EtcdCluster CRD from crds/, installed (or updated) and served."""
    await install_crd(kube)
    return kube


@pytest.fixture(scope="module")
def operators(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operators]:
    ops = Operators(control_plane.kubeconfig, tmp_path_factory.mktemp("operator-logs"))
    try:
        yield ops
    finally:
        ops.stop_all()


@pytest.fixture(scope="module")
async def module_namespaces(etcdcluster_crd: KubeClient) -> AsyncIterator[list[str]]:
    """The namespaces this module created (fixtures append to it); at the module's end each is
    deleted (again: deleting twice is harmless) and waited for until it is gone."""
    created: list[str] = []
    yield created
    for ns in created:
        await delete_namespace(etcdcluster_crd, ns)
    await wait_namespaces_gone(etcdcluster_crd, created, NAMESPACES_GONE_WITHIN)


@pytest.fixture(scope="module")
async def lease_namespace(
    etcdcluster_crd: KubeClient, module_namespaces: list[str]
) -> AsyncIterator[str]:
    ns = await new_namespace(etcdcluster_crd, "lease")
    module_namespaces.append(ns)
    yield ns
    await delete_namespace(etcdcluster_crd, ns)


@pytest.fixture(scope="module")
async def operator(
    etcdcluster_crd: KubeClient,
    operators: Operators,
    lease_namespace: str,
    request: pytest.FixtureRequest,
) -> OperatorProcess:
    """One operator watching every namespace, serving metrics, holding its Lease."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    op = operators.start(f"op-{name}", lease_namespace=lease_namespace)
    await op.wait_serving()
    await wait_lease_holder(etcdcluster_crd, lease_namespace, op.identity, within=60)
    return op


@pytest.fixture(scope="module")
def agent_image(local_node: LocalNode) -> str:
    """The image member pods' agent sidecar runs: this checkout's code (the nodes import it)."""
    return product_image()


@pytest.fixture
async def namespace(
    etcdcluster_crd: KubeClient, module_namespaces: list[str]
) -> AsyncIterator[str]:
    """A fresh namespace for one test; its deletion starts afterwards and the module's end
    waits for it."""
    ns = await new_namespace(etcdcluster_crd, "ec")
    module_namespaces.append(ns)
    yield ns
    await delete_namespace(etcdcluster_crd, ns)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """A failed scenario shows the last lines of every operator that ran during it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for op in LIVE_OPERATORS:
            report.sections.append((f"operator {op.identity} log ({op.log_path})", op.tail(80)))
