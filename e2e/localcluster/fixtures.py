"""pytest fixtures: a real local control plane (and S3 server) per test session.

With ETCDOP_REUSE_CLUSTER=1 they use the cluster that `python -m e2e.localcluster up` started
(and leave it running), so a developer can iterate without paying start-up each run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import kr8s.asyncio
import pytest

from e2e.localcluster.cluster import default_state_dir
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.s3 import S3Endpoint, S3Server


def reuse_requested() -> bool:
    return os.environ.get("ETCDOP_REUSE_CLUSTER", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    if reuse_requested():
        cp = ControlPlane(default_state_dir())
        if not cp.running():
            raise RuntimeError(
                "ETCDOP_REUSE_CLUSTER is set but no local cluster runs in "
                f"{cp.state_dir}: run `python -m e2e.localcluster up` or unset it"
            )
        os.environ["KUBECONFIG"] = str(cp.kubeconfig)
        yield cp
        return
    cp = ControlPlane(tmp_path_factory.mktemp("cluster"))
    cp.start()
    os.environ["KUBECONFIG"] = str(cp.kubeconfig)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def s3_server(control_plane: ControlPlane) -> Iterator[S3Endpoint]:
    server = S3Server(control_plane.state_dir)
    reused = reuse_requested() and server.running()
    endpoint = server.start()
    try:
        yield endpoint
    finally:
        if not reused:
            server.stop()


@pytest.fixture(scope="session")
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[kr8s.asyncio.Api]:
    api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
    yield api  # keep this reference: kr8s caches its clients weakly
