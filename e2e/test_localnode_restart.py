"""Node restarts on the local node behave as a rebooted kubelet's: pods keep their objects and
emptyDir data, restartPolicy Never pods whose containers ran are not run again (their lost run is
reported terminated, 137), restartPolicy Always pods start over with restartCount + 1, and no
container is ever reported Running without a process. Also a single Node stopped and started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.node import kubelet
from e2e.localcluster.node.fixtures import LocalNode
from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.testing import (
    condition,
    container_status,
    create,
    delete_namespace,
    eventually,
    new_namespace,
    pid_alive,
    pod,
    wait_pod,
    wait_ready,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.imitation]


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> Kube:
    return Kube(kube_api)


@pytest.fixture
async def ns(kube: Kube, local_node: LocalNode) -> AsyncIterator[str]:
    name = await new_namespace(kube, "reboot")
    yield name
    await delete_namespace(kube, name)


def shell_pod(ns: str, name: str, image: str, script: str, policy: str,
              node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": policy, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": image, "command": ["/bin/sh", "-c", script],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def runs(local_node: LocalNode, ns: str, name: str) -> list[str]:
    """The log files of container c of NS/NAME: one per run the node started."""
    d = kubelet.pod_dirs(local_node.state_dir, ns, name)[0] / "containers" / "c"
    return sorted(p.name for p in d.glob("*.log"))


def emptydir(local_node: LocalNode, ns: str, name: str) -> Path:
    return Path(local_node.pod_info(ns, name)["volumes"]["data"])


def running(p: dict[str, Any]) -> bool:
    return "running" in container_status(p, "c")["state"]


async def make_pods(kube: Kube, ns: str, image: str, node: str | None = None) -> None:
    """once: Never, runs when the node restarts; done: Never, finished before; always: Always.
    Each writes to its emptyDir first."""
    await create(kube, shell_pod(ns, "once", image,
                                 "echo once >> /data/runs; echo ran; exec sleep 3600", "Never",
                                 node))
    await create(kube, shell_pod(ns, "done", image, "echo done >> /data/runs", "Never", node))
    await create(kube, shell_pod(ns, "always", image,
                                 "echo boot >> /data/runs; exec sleep 3600", "Always", node))
    await wait_pod(kube, ns, "once", running, 60, "running")
    await wait_pod(kube, ns, "always", running, 60, "running")
    await wait_pod(kube, ns, "done", lambda p: p["status"].get("phase") == "Succeeded", 60,
                   "Succeeded")


async def assert_rebooted(kube: Kube, ns: str, local_node: LocalNode,
                          pids: dict[str, int]) -> None:
    """What a kubelet shows after the node restarted under the pods of make_pods."""
    for name, pid in pids.items():
        assert not pid_alive(pid), f"{name}: pid {pid} survived the node restart"

    p = await wait_pod(kube, ns, "once", lambda p: p["status"].get("phase") == "Failed", 60,
                       "Failed (its run died with the node)")
    t = container_status(p, "c")["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (137, "Error")
    assert container_status(p, "c")["restartCount"] == 0
    assert runs(local_node, ns, "once") == ["0.log"]  # not run again
    assert (emptydir(local_node, ns, "once") / "runs").read_text() == "once\n"

    done = await pod(kube, ns, "done")
    assert done is not None and done["status"]["phase"] == "Succeeded"
    assert runs(local_node, ns, "done") == ["0.log"]

    def restarted(p: dict[str, Any]) -> bool:
        cs = container_status(p, "c")
        return cs["restartCount"] == 1 and "running" in cs["state"] and cs["ready"]

    p = await wait_pod(kube, ns, "always", restarted, 60, "running again, restartCount 1")
    last = container_status(p, "c")["lastState"]["terminated"]
    assert last["exitCode"] == 137
    assert (emptydir(local_node, ns, "always") / "runs").read_text() == "boot\nboot\n"
    assert pid_alive(local_node.pod_info(ns, "always")["pids"]["c"])


async def test_node_agent_restart_is_a_reboot(kube: Kube, ns: str, web_image: str,
                                              local_node: LocalNode) -> None:
    """The node part of `make cluster-down && make cluster-up`: the agent is SIGTERMed, the pod
    networks are swept, the agent starts again."""
    await make_pods(kube, ns, web_image)
    pids = {n: local_node.pod_info(ns, n)["pids"]["c"] for n in ("once", "always")}
    await asyncio.to_thread(local_node.restart_agent)
    await assert_rebooted(kube, ns, local_node, pids)


async def test_restart_all_nodes_keeps_emptydir_and_runs_never_pods_once(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    """The hard path: every node loses power at once while the control plane runs."""
    await make_pods(kube, ns, web_image)
    pids = {n: local_node.pod_info(ns, n)["pids"]["c"] for n in ("once", "always")}
    await asyncio.to_thread(local_node.restart_all_nodes)
    await assert_rebooted(kube, ns, local_node, pids)


async def test_stopped_node_goes_not_ready_and_its_pods_wait_for_it(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    node = local_node.node_names[1]
    await create(kube, shell_pod(ns, "stays", web_image,
                                 "echo boot >> /data/runs; exec sleep 3600", "Always", node))
    await create(kube, shell_pod(ns, "goes", web_image, "exec sleep 3600", "Always", node))
    await wait_ready(kube, ns, "stays", 60)
    await wait_ready(kube, ns, "goes", 60)
    pids = {n: local_node.pod_info(ns, n)["pids"]["c"] for n in ("stays", "goes")}
    goes_dir = emptydir(local_node, ns, "goes")

    t0 = time.monotonic()
    await asyncio.to_thread(local_node.stop_node, node)
    try:
        assert not any(pid_alive(p) for p in pids.values())
        await kube.delete(f"/api/v1/namespaces/{ns}/pods/goes")

        async def not_ready() -> bool:
            n = await kube.get(f"/api/v1/nodes/{node}")
            return n is not None and condition(n, "Ready") in ("False", "Unknown")

        await eventually(not_ready, 60, f"node {node} NotReady", every=0.5)
        took = time.monotonic() - t0
        assert took < 40  # node-monitor-grace-period is 20 s
        p = await pod(kube, ns, "goes")
        assert p is not None and p["metadata"].get("deletionTimestamp"), "deleted on a dead node"
        s = await pod(kube, ns, "stays")
        assert s is not None and running(s)  # nothing reports for a dead node
    finally:
        await asyncio.to_thread(local_node.start_node, node)

    async def ready_again() -> bool:
        n = await kube.get(f"/api/v1/nodes/{node}")
        return n is not None and condition(n, "Ready") == "True"

    await eventually(ready_again, 60, f"node {node} Ready again", every=0.5)

    def restarted(p: dict[str, Any]) -> bool:
        cs = container_status(p, "c")
        return cs["restartCount"] == 1 and "running" in cs["state"]

    await wait_pod(kube, ns, "stays", restarted, 60, "running again, restartCount 1")
    assert (emptydir(local_node, ns, "stays") / "runs").read_text() == "boot\nboot\n"

    async def gone() -> bool:
        return await pod(kube, ns, "goes") is None

    await eventually(gone, 60, "the pod deleted while its node was down to be gone")
    assert not (goes_dir.exists() and any(goes_dir.iterdir()))


async def test_volumes_of_a_pod_deleted_while_the_nodes_were_down_are_removed(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    await create(kube, shell_pod(ns, "gone", web_image,
                                 "echo x > /data/f; exec sleep 3600", "Always"))
    await wait_pod(kube, ns, "gone", running, 60, "running")
    pod_dir = kubelet.pod_dirs(local_node.state_dir, ns, "gone")[0]
    assert (pod_dir / "volumes" / "data" / "f").is_file()
    loop = asyncio.get_running_loop()
    force = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}

    def delete_meanwhile() -> None:
        asyncio.run_coroutine_threadsafe(
            kube.delete(f"/api/v1/namespaces/{ns}/pods/gone", force), loop).result(30)

    await asyncio.to_thread(local_node.restart_all_nodes, while_down=delete_meanwhile)
    assert await pod(kube, ns, "gone") is None
    assert not (pod_dir / "volumes").exists()  # removed before the agent said it was up
    assert (pod_dir / "containers" / "c" / "0.log").exists()  # logs stay, as with any pod
