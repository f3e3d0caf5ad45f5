"""Fault functions without Kubernetes: kill a container, wipe a volume, cut a pod, mute a Node."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.localcluster.node import faults, netns, proc
from e2e.localcluster.node.sandbox_testing import (
    isolated_sandbox,
    reachable,
    server_argv,
    spec,
    wait_until,
)

pytestmark = pytest.mark.imitation  # the older node agent's parts (ETCDOP_NODE=imitation)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[netns.Settings]:
    with isolated_sandbox() as settings:
        yield settings


async def test_kill_container_by_pod_uid_and_name(sandbox: netns.Settings, tmp_path: Path) -> None:
    uid = "faults-kill"
    pod = netns.create_pod_network(uid, "k")
    running = await proc.start_container(spec(pod, ["sleep", "1000"], tmp_path, "victim"))
    assert faults.kill_container(uid, "victim") == running.pid
    assert await running.wait() == 128 + signal.SIGKILL
    # The record went with the container: a second kill names what is running (nothing).
    with pytest.raises(faults.FaultError, match="no running container 'victim'"):
        faults.kill_container(uid, "victim")


async def test_wipe_volume_by_mount_path(sandbox: netns.Settings, tmp_path: Path) -> None:
    uid = "faults-wipe"
    pod = netns.create_pod_network(uid, "w")
    data = tmp_path / "data"
    (data / "member" / "snap").mkdir(parents=True)
    (data / "member" / "snap" / "db").write_text("x")
    (data / "top").write_text("y")
    running = await proc.start_container(
        spec(
            pod,
            ["sleep", "1000"],
            tmp_path,
            "etcd",
            mounts=[proc.Mount(str(data), "/var/lib/etcd")],
        )
    )
    assert faults.wipe_volume(uid, "/var/lib/etcd/") == data
    assert data.is_dir() and list(data.iterdir()) == []
    rc, out = await proc.exec_in_container(running, ["ls", "-A", "/var/lib/etcd"], 10)
    assert (rc, out) == (0, "")  # the container sees the wiped directory
    with pytest.raises(faults.FaultError, match="/nowhere"):
        faults.wipe_volume(uid, "/nowhere")
    running.kill_tree()
    await running.wait()


async def test_cut_and_heal_through_faults(sandbox: netns.Settings, tmp_path: Path) -> None:
    uid = "faults-cut"
    pod = netns.create_pod_network(uid, "c")
    running = await proc.start_container(spec(pod, server_argv(7070), tmp_path, "srv"))
    await wait_until(lambda: reachable(pod.ip, 7070), 20, "the server")
    faults.cut_pod_network(uid)
    assert not await reachable(pod.ip, 7070)
    faults.heal_pod_network(uid)
    await wait_until(lambda: reachable(pod.ip, 7070), 20, "the server after healing")
    running.kill_tree()
    await running.wait()


def test_heartbeat_flag_round_trip(sandbox: netns.Settings) -> None:
    assert not faults.heartbeat_stopped("local-1")
    faults.stop_node_heartbeat("local-1")
    assert faults.heartbeat_stopped("local-1")
    assert not faults.heartbeat_stopped("local-0")
    faults.resume_node_heartbeat("local-1")
    assert not faults.heartbeat_stopped("local-1")
