"""teardown_all leaves nothing: no netns, veth, bridge, mount, process or state of the sandbox."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

from e2e.localcluster.node import netns, proc
from e2e.localcluster.node.sandbox_testing import (
    TEST_BRIDGE,
    TEST_PREFIX,
    host_mounts,
    isolated_sandbox,
    pid_alive,
    read,
    spec,
    wait_until,
)

pytestmark = pytest.mark.imitation  # the older node agent's parts (ETCDOP_NODE=imitation)


def _has_text(path: Path) -> bool:
    return path.read_text().strip() != ""


def links() -> str:
    return subprocess.run(
        ["ip", "-o", "link", "show"], check=True, capture_output=True, text=True
    ).stdout


async def test_teardown_all_leaves_nothing(tmp_path: Path) -> None:
    with isolated_sandbox() as settings:
        pods = [netns.create_pod_network(f"teardown-{i}", f"t{i}") for i in range(2)]
        vol = tmp_path / "vol"
        vol.mkdir()
        pids: list[int] = []
        for i, pod in enumerate(pods):
            script = f"setsid sleep 1000 & echo $! > /vol/daemon{i}; exec sleep 1000"
            running = await proc.start_container(
                spec(
                    pod,
                    ["sh", "-c", script],
                    tmp_path,
                    f"c{i}",
                    mounts=[proc.Mount(str(vol), "/vol")],
                )
            )
            pids.append(running.pid)
            daemon = vol / f"daemon{i}"
            await wait_until(
                functools.partial(_has_text, daemon),
                20,
                f"container c{i} to start its daemon",
            )
            pids.append(int(read(daemon)))
        assert all(pid_alive(p) for p in pids)
        assert len(netns.list_netns()) == 2 and TEST_BRIDGE in links()
        assert settings.root.exists()

        netns.teardown_all()

        assert not any(pid_alive(p) for p in pids)
        assert netns.list_netns() == []
        text = links()
        assert TEST_BRIDGE not in text and f"{TEST_PREFIX}v" not in text
        assert not [m for m in host_mounts() if TEST_PREFIX in m or "sbxtest" in m]
        assert not settings.root.exists()
        for pod in pods:
            assert netns.pids_in_netns(pod.netns) == []
        netns.teardown_all()  # idempotent on an empty sandbox
