"""A real etcd snapshot stream that is cut short or altered on the way is never stored."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.localcluster.binaries import ETCD_VERSIONS
from etcdop.agent.backup import BackupPlan, take_backup
from etcdop.agent.snapshot_check import SnapshotCorrupt
from etcdop.etcd import EtcdClient
from etcdop.objectstore import MIB, ObjectStore
from tests.etcdprocs import EtcdProcs
from tests.s3procs import S3Procs

pytestmark = pytest.mark.timeout(180)
Damage = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


class DamagingClient(EtcdClient):
    """The real facade, with DAMAGE applied to the bytes etcd sent."""

    damage: Damage

    async def snapshot(
        self, endpoint: str, within: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        async for chunk in self.damage(super().snapshot(endpoint, within)):
            yield chunk


async def drop_the_tail(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream ends early: everything but the last 100 bytes."""
    held = b""
    async for chunk in chunks:
        if held:
            yield held
        held = chunk
    yield held[:-100]


async def flip_a_byte(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    n = 0
    async for chunk in chunks:
        n += 1
        yield bytes([chunk[0] ^ 0x01]) + chunk[1:] if n == 20 else chunk


async def lose_a_chunk(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    n = 0
    async for chunk in chunks:
        n += 1
        if n != 50:
            yield chunk


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Procs]:
    with S3Procs(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module", params=ETCD_VERSIONS)
def member(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EtcdProcs]:
    with EtcdProcs(tmp_path_factory.mktemp("etcd"), request.param, size=1) as procs:
        yield procs


@pytest.mark.parametrize("damage", [drop_the_tail, flip_a_byte, lose_a_chunk])
async def test_a_damaged_stream_is_refused_and_its_upload_aborted(
    member: EtcdProcs, s3: S3Procs, damage: Damage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = member.endpoints[0]
    async with DamagingClient([endpoint]) as etcd:
        for i in range(600):  # 30 MiB: the damage lands after parts were uploaded
            await etcd.put(f"/k/{i:04d}", b"v" * 50_000)
        etcd.damage = damage
        bucket = s3.new_bucket()
        uploaded: list[int] = []
        store = ObjectStore(s3.config(bucket))
        original_upload = store.upload

        async def counting_upload(*args: Any, **kw: Any) -> Any:
            kw["on_part"] = uploaded.append
            return await original_upload(*args, **kw)

        monkeypatch.setattr(store, "upload", counting_upload)  # count the parts really stored

        with pytest.raises(SnapshotCorrupt):
            await take_backup(etcd, endpoint, store,
                              BackupPlan("ns", "demo", "m0", part_size=5 * MIB))

    assert uploaded, "the damage should come after some parts were stored"
    assert s3.uploads(bucket) == []  # aborted: no orphan parts
    assert s3.keys(bucket) == []  # no object, no metadata


async def test_the_undamaged_stream_is_stored(member: EtcdProcs, s3: S3Procs) -> None:
    endpoint = member.endpoints[0]
    async with EtcdClient([endpoint]) as etcd:
        bucket = s3.new_bucket()
        meta = await take_backup(etcd, endpoint, ObjectStore(s3.config(bucket)),
                                 BackupPlan("ns", "demo", "m0", part_size=5 * MIB))
    assert sorted(s3.keys(bucket)) == sorted(
        [meta.snapshot_key, meta.snapshot_key.replace("snapshot.db", "metadata.json")])
