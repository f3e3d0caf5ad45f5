"""Out of a NOSPACE alarm with the facade's calls, against real etcd 3.5 and 3.6."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdop.etcd import EtcdClient, EtcdError
from tests.etcdprocs import EtcdProcs

pytestmark = pytest.mark.timeout(180)

QUOTA = 16 * 2**20


@pytest.fixture
def small_quota(etcd_version: str, tmp_path: Path) -> Iterator[EtcdProcs]:
    with EtcdProcs(
        tmp_path / "etcd", etcd_version, size=3, extra_args=(f"--quota-backend-bytes={QUOTA}",)
    ) as procs:
        yield procs


async def test_compact_defragment_and_disarm_let_writes_in_again(small_quota: EtcdProcs) -> None:
    """Was: the disarm named member 0, which etcd matches with nothing, so the alarm stayed
    raised and every write kept failing after compaction and defragmentation."""
    endpoints = small_quota.endpoints
    async with EtcdClient(endpoints, timeout=5.0, change_timeout=30.0) as etcd:
        value = b"x" * (512 * 1024)
        with pytest.raises(EtcdError, match="space exceeded"):
            for _ in range(100):  # 50 MiB of history: past the 16 MiB quota
                await etcd.put("big", value)
        statuses = [await etcd.status(ep) for ep in endpoints]
        assert any("NOSPACE" in e for s in statuses for e in s.errors), statuses

        revision = max(s.revision for s in statuses)
        await etcd.compact(revision)
        await etcd.compact(revision)  # done already: not an error
        for ep in endpoints:
            await etcd.defragment(ep)
        after = [await etcd.status(ep) for ep in endpoints]
        assert all(s.db_size < QUOTA // 4 for s in after), [s.db_size for s in after]

        await etcd.disarm_nospace()

        left = [(await etcd.status(ep)).errors for ep in endpoints]
        assert left == [(), (), ()], left
        await etcd.put("after", "ok")
        assert await etcd.get("after") == b"ok"
