"""etcd's downgrade API through the facade, and the cluster version the operator reads from
/version: the two things a rollback after a completed minor upgrade rests on (real etcd 3.6)."""

from __future__ import annotations

import pytest

from etcdop.etcd import EtcdClient
from etcdop.operator.etcdcluster.observing import cluster_version
from tests.etcdprocs import EtcdProcs
from tests.waiting import eventually


@pytest.mark.parametrize("etcd_version", ["v3.6.16"], indirect=True)
async def test_enabling_a_downgrade_lowers_the_cluster_version_and_may_be_repeated(
    etcd_procs: EtcdProcs, etcd: EtcdClient
) -> None:
    urls = etcd_procs.endpoints

    async def speaks(version: str) -> bool:
        assert await cluster_version(urls) == version
        return True

    await eventually(lambda: speaks("3.6.0"), 30, "cluster version 3.6.0")
    await etcd.enable_downgrade("3.5")
    await etcd.enable_downgrade("3.5")  # a step repeated after a crash is not an error
    await eventually(lambda: speaks("3.5.0"), 30, "cluster version 3.5.0 once enabled")

    async def stored_as_35() -> bool:
        versions = [(await etcd.status(u)).storage_version for u in urls]
        assert versions == ["3.5.0"] * len(urls), versions
        return True

    # Members of 3.5 may join only on data they can read: etcd rewrites it after the enable.
    await eventually(stored_as_35, 60, "every member's storage version lowered to 3.5.0")


async def test_no_answer_reads_as_an_unknown_cluster_version() -> None:
    assert await cluster_version(["http://127.0.0.1:1"]) == ""


@pytest.mark.parametrize("etcd_version", ["v3.6.16"], indirect=True)
async def test_a_downgrade_shows_in_each_members_status_and_a_cancel_ends_it(
    etcd_procs: EtcdProcs, etcd: EtcdClient
) -> None:
    """What the planner's CancelDowngrade rests on: the target is visible, the cancel brings the
    cluster version back up, and a second cancel is not an error."""
    urls = etcd_procs.endpoints
    await etcd.enable_downgrade("3.5")

    async def targets(want: str) -> bool:
        seen = [(await etcd.status(u)).downgrade_target for u in urls]
        assert seen == [want] * len(urls), seen
        return True

    await eventually(lambda: targets("3.5.0"), 30, "every member reporting the downgrade")
    await etcd.cancel_downgrade()
    await etcd.cancel_downgrade()  # repeated after a crash: already ended is fine
    await eventually(lambda: targets(""), 30, "the downgrade ended on every member")

    async def back_up() -> bool:
        assert await cluster_version(urls) == "3.6.0"
        return True

    await eventually(back_up, 30, "cluster version 3.6.0 again")
