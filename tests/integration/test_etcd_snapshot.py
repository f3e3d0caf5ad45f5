"""The facade's snapshot stream yields a snapshot that etcd's own tool accepts, and its
failures are the facade's errors naming the member."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from e2e.localcluster.binaries import bin_path
from etcdop.etcd import DeadlineExceeded, EtcdClient, EtcdError, Unavailable
from tests.etcdprocs import EtcdProcs

pytestmark = pytest.mark.timeout(120)


async def test_snapshot_stream_is_a_valid_snapshot(
    etcd: EtcdClient, etcd_procs: EtcdProcs, etcd_version: str, tmp_path: Path
) -> None:
    for i in range(200):
        await etcd.put(f"/snap/{i:03d}", f"value-{i}" * 20)
    followers = [ep for ep in etcd_procs.endpoints if not (await etcd.status(ep)).is_leader]
    follower = followers[0]
    path = tmp_path / "member.db"

    chunks = 0
    with path.open("wb") as out:
        async for chunk in etcd.snapshot(follower):
            assert isinstance(chunk, bytes)
            out.write(chunk)
            chunks += 1

    assert chunks >= 1
    assert path.stat().st_size > 0
    etcdutl = await asyncio.create_subprocess_exec(
        str(bin_path("etcdutl", etcd_version)), "snapshot", "status", str(path), "-w", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(etcdutl.communicate(), 60)
    assert etcdutl.returncode == 0, stderr.decode()
    status = json.loads(stdout)
    assert status["totalKey"] >= 200
    assert status["totalSize"] > 0


async def test_snapshot_stopped_early_leaves_the_member_serving(
    etcd: EtcdClient, etcd_procs: EtcdProcs
) -> None:
    endpoint = etcd_procs.endpoints[0]
    async with contextlib.aclosing(etcd.snapshot(endpoint)) as stream:
        first = await anext(stream)
    assert first

    again = b"".join([chunk async for chunk in etcd.snapshot(endpoint)])
    assert len(again) >= len(first)
    assert (await etcd.health(endpoint)).healthy


async def test_snapshot_of_a_stopped_member_fails_naming_it(
    etcd: EtcdClient, etcd_procs: EtcdProcs
) -> None:
    member = list(etcd_procs.members.values())[-1]
    endpoint = member.endpoint
    etcd_procs.kill(member.name)
    with pytest.raises(Unavailable) as raised:
        async for _ in etcd.snapshot(endpoint, within=5):
            pass
    assert endpoint in str(raised.value)


async def test_snapshot_past_its_deadline_fails_with_the_facades_error(
    etcd: EtcdClient, etcd_procs: EtcdProcs
) -> None:
    """The deadline ends the call on either side: the client's own (DEADLINE_EXCEEDED) or the
    server's, which resets the stream (CANCELLED): either is a facade error naming the member."""
    endpoint = etcd_procs.endpoints[0]
    for i in range(50):
        await etcd.put(f"/slow/{i:03d}", b"x" * 65536)
    with pytest.raises(EtcdError) as raised:
        async for _ in etcd.snapshot(endpoint, within=0.001):
            pass
    assert endpoint in str(raised.value)
    assert isinstance(raised.value, DeadlineExceeded) or "CANCELLED" in str(raised.value)
