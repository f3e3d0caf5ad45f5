"""Fixtures for tests against real local etcd clusters (tests/etcdprocs.py), one per etcd line."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from e2e.localcluster.binaries import ETCD_VERSIONS
from etcdop.etcd import EtcdClient
from tests.etcdprocs import EtcdProcs


@pytest.fixture(params=ETCD_VERSIONS)
def etcd_version(request: pytest.FixtureRequest) -> str:
    """Each etcd line we support (newest first), e.g. "v3.6.16" and "v3.5.35"."""
    version: str = request.param
    return version


@pytest.fixture
def etcd_procs(etcd_version: str, tmp_path: Path) -> Iterator[EtcdProcs]:
    """A fresh, healthy 3-member cluster; every process it started is gone afterwards."""
    procs = EtcdProcs(tmp_path / "etcd", etcd_version, size=3)
    with procs:
        yield procs
        pids = procs.pids()
    left = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert not left, f"etcd processes left behind: {left}"


@pytest.fixture
async def etcd(etcd_procs: EtcdProcs) -> AsyncIterator[EtcdClient]:
    """The facade over every member of `etcd_procs`, closed afterwards."""
    async with EtcdClient(etcd_procs.endpoints, timeout=3.0, change_timeout=10.0) as client:
        yield client
