"""pytest fixture ``local_node``: the node agent on top of the ``control_plane`` fixture.

It starts ``python -m e2e.localcluster.node`` (3 Nodes) and waits until every Node is Ready and
the ``local`` StorageClass exists; at the end of the session it stops the agent, which kills every
pod process and removes every pod network. With ETCDOP_REUSE_CLUSTER=1 it uses the agent that
``python -m e2e.localcluster up`` started and leaves it running.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.cluster import NODE_AGENT
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.fixtures import reuse_requested
from e2e.localcluster.node import agent, faults, images, kubelet, nodes
from e2e.localcluster.procs import Procs

REPO = agent.REPO


@dataclass
class LocalNode:
    """Handle the tests get: where the agent keeps things, and the helpers that use them."""

    state_dir: Path
    node_names: list[str]
    procs: Procs
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_file(self) -> Path:
        return self.state_dir / "images.yaml"

    def this_checkout_image(self, ref: str, directory: Path) -> str:
        """An image that runs THIS checkout's code in pods (e2e.operator.this_checkout_image)."""
        from e2e.operator import this_checkout_image

        return this_checkout_image(self.cluster_state_dir, ref, directory)

    def add_image(
        self,
        ref: str,
        directory: Path,
        entrypoint: list[str] | None = None,
        cmd: list[str] | None = None,
    ) -> None:
        """Map image REF to DIRECTORY (a dir of executables) for pods created after this."""
        images.add_image(self.images_file, ref, directory, entrypoint, cmd)

    def pod_logs(self, ns: str, name: str, container: str, previous: bool = False) -> str:
        return kubelet.pod_logs(self.state_dir, ns, name, container, previous)

    def pod_info(self, ns: str, name: str) -> dict[str, Any]:
        """pod.json of the newest pod NS/NAME: netns, ip, volume sources, container pids."""
        import json

        for d in kubelet.pod_dirs(self.state_dir, ns, name):
            f = d / "pod.json"
            if f.is_file():
                info: dict[str, Any] = json.loads(f.read_text())
                return info
        raise FileNotFoundError(f"pod {ns}/{name} has no pod.json under {self.state_dir}")

    def stop_heartbeat(self, node: str) -> None:
        faults.stop_node_heartbeat(node)

    def resume_heartbeat(self, node: str) -> None:
        faults.resume_node_heartbeat(node)

    def agent_log(self, lines: int = 60) -> str:
        return self.procs.tail(NODE_AGENT, lines)

    def stop_node(self, node: str) -> None:
        """NODE dies (see faults.stop_node); blocking: call it with asyncio.to_thread."""
        faults.stop_node(node)

    def start_node(self, node: str) -> None:
        faults.start_node(node)

    @property
    def cluster_state_dir(self) -> Path:
        return self.state_dir.parent

    def restart_all_nodes(
        self, within: float = 120.0, while_down: Callable[[], None] | None = None
    ) -> None:
        """Every node reboots at once (see agent.restart_all_nodes); blocking: call it with
        asyncio.to_thread. Returns once the new agent is up."""
        agent.restart_all_nodes(self.cluster_state_dir, within, while_down)

    def restart_agent(self, within: float = 120.0) -> None:
        """What `make cluster-down && make cluster-up` do to the node agent: SIGTERM it (it
        stops its pods), sweep the pod networks, start it again with the same command line."""
        from e2e.localcluster.node import netns

        argv = agent.running_argv(self.procs)
        self.procs.stop(NODE_AGENT, grace=30)
        netns.teardown_all()
        agent.start(self.procs, argv)
        agent.wait_ready(self.procs, self.state_dir, within)


async def wait_nodes_ready(
    api: kr8s.asyncio.Api, names: list[str], within: float, agent_alive: Any
) -> None:
    deadline = time.monotonic() + within
    missing = list(names)
    while time.monotonic() < deadline:
        if not agent_alive():
            raise RuntimeError("the node agent exited while starting")
        missing = []
        for name in names:
            async with api.call_api(
                "GET", version="v1", url=f"nodes/{name}", raise_for_status=False
            ) as r:
                node = r.json() if r.status_code == 200 else {}
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
            if conds.get("Ready") != "True":
                missing.append(name)
        async with api.call_api(
            "GET", version="storage.k8s.io/v1", url="storageclasses/local", raise_for_status=False
        ) as r:
            if r.status_code != 200:
                missing.append("storageclass/local")
        if not missing:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"timed out after {within:.0f}s waiting for {missing} to be Ready")


@pytest.fixture(scope="session")
async def local_node(
    control_plane: ControlPlane, kube_api: kr8s.asyncio.Api
) -> AsyncIterator[LocalNode]:
    from e2e.localcluster import kubelet as real_node

    if real_node.enabled():  # upstream kubelets unless ETCDOP_NODE=imitation
        from e2e.localcluster.kubelet.fixtures import real_local_node

        async for real in real_local_node(control_plane):
            yield real
        return
    state_dir = control_plane.state_dir / "node"
    procs = Procs(control_plane.state_dir)
    handle = LocalNode(state_dir, nodes.node_names(3), procs)
    if reuse_requested():
        if not procs.alive(NODE_AGENT):
            raise RuntimeError(
                f"ETCDOP_REUSE_CLUSTER is set but no node agent runs for {control_plane.state_dir}:"
                " run `python -m e2e.localcluster up` (without --no-node)"
            )
        await wait_nodes_ready(kube_api, handle.node_names, 60, lambda: True)
        yield handle
        return
    lock_fd = await machine_lock(1800)
    agent.start(
        procs, agent.agent_argv(control_plane.kubeconfig, state_dir, len(handle.node_names))
    )
    try:
        await asyncio.to_thread(agent.wait_ready, procs, state_dir, 90)
        await wait_nodes_ready(kube_api, handle.node_names, 90, lambda: procs.alive(NODE_AGENT))
    except BaseException as e:
        tail = procs.tail(NODE_AGENT, 60)
        await asyncio.to_thread(procs.stop, NODE_AGENT, 30)
        os.close(lock_fd)
        raise RuntimeError(f"node agent did not come up: {e}\n--- its log:\n{tail}") from e
    try:
        yield handle
    finally:
        await asyncio.to_thread(procs.stop, NODE_AGENT, 40)
        from e2e.localcluster.node import netns

        await asyncio.to_thread(netns.teardown_all)
        os.close(lock_fd)


MACHINE_LOCK = agent.MACHINE_LOCK


async def machine_lock(within: float) -> int:
    """The pod sandbox is machine-wide (one bridge, one DNS on port 53): two test sessions with
    a node agent each would tear down each other's pods. The second one waits for the first."""
    MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + within
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TimeoutError(
                    f"another test session holds {MACHINE_LOCK} (a local node agent runs) for "
                    f"over {within:.0f}s; wait for it or stop it"
                ) from None
            await asyncio.sleep(2)


WEB_SERVER = Path(__file__).resolve().parent / "testdata" / "web_server.py"


def build_script_image(directory: Path, program: str, script: Path) -> Path:
    """An image directory holding PROGRAM, a wrapper that runs SCRIPT with our interpreter;
    PROGRAM is also the image's ENTRYPOINT."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / program
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -u {script} "$@"\n')
    exe.chmod(0o755)
    (directory / "ENTRYPOINT").write_text(f"{program}\n")
    return directory


@pytest.fixture(scope="session")
def web_image(local_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Image ``etcdop-test/web:1``: the small HTTP server of testdata/web_server.py on :8080."""
    ref = "etcdop-test/web:1"
    local_node.add_image(
        ref, build_script_image(tmp_path_factory.mktemp("web-image"), "web-server", WEB_SERVER)
    )
    return ref
