"""Containers without Kubernetes: private mounts, names, signals, process trees, exec."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.localcluster.node import netns, proc
from e2e.localcluster.node.sandbox_testing import (
    existing,
    host_mounts,
    isolated_sandbox,
    pid_alive,
    read,
    spec,
    wait_until,
)

pytestmark = pytest.mark.imitation  # the older node agent's parts (ETCDOP_NODE=imitation)

# Targets whose parents do not exist on the host: below an existing dir, through the /var/run
# symlink, and at the top level (parent "/").
DEEP = "/var/lib/etcdop-sbxtest/data"
SECRETS = "/var/run/secrets/etcdop-sbxtest.io/serviceaccount"
TOP = "/etcdop-sbxtest-top/inner"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[netns.Settings]:
    with isolated_sandbox() as settings:
        yield settings


@pytest.fixture
def pod(sandbox: netns.Settings, request: pytest.FixtureRequest) -> Iterator[netns.PodNetwork]:
    uid = f"pod-{request.node.name}"
    yield netns.create_pod_network(uid, "ignored")
    netns.delete_pod_network(uid)


def test_targets_do_not_exist_on_the_host() -> None:
    for target in (DEEP, SECRETS, TOP):
        assert not os.path.lexists(target), f"{target} exists on the host; remove it first"
    assert not os.path.lexists("/var/lib/etcdop-sbxtest")
    assert not os.path.lexists("/run/secrets/etcdop-sbxtest.io")


async def test_container_sees_its_mounts_and_the_host_does_not(
    pod: netns.PodNetwork, tmp_path: Path
) -> None:
    data, secret, top = (tmp_path / n for n in ("data", "secret", "top"))
    for d, text in ((data, "data"), (secret, "token"), (top, "top")):
        d.mkdir()
        (d / "file").write_text(text)
    script = (
        f"cat {DEEP}/file {SECRETS}/file {TOP}/file; echo; "
        f"echo written > {DEEP}/new; "
        f"if {{ echo x > {SECRETS}/x; }} 2>/dev/null; then echo rw; else echo ro; fi; "
        "hostname; pwd; cat /etc/hosts /etc/resolv.conf; "
        "exec sleep 300"
    )
    mounts = [
        proc.Mount(str(data), DEEP),
        proc.Mount(str(secret), SECRETS, read_only=True),
        proc.Mount(str(top), TOP),
    ]
    logs = tmp_path / "logs"
    running = await proc.start_container(
        spec(
            pod,
            ["sh", "-c", script],
            logs,
            "main",
            hostname="etcd-0",
            mounts=mounts,
            workdir="/work/here",
            subdomain="etcd",
            namespace="ns1",
        )
    )
    log = logs / "main.log"
    await wait_until(lambda: "search" in log.read_text(), 20, "the container's output")
    out = log.read_text().splitlines()
    assert out[0] == "datatokentop"
    assert out[1] == "ro"  # the read-only mount refuses writes
    assert out[2] == "etcd-0"  # UTS namespace of its own
    assert out[3] == "/work/here"  # missing workdir created, inside the container only
    assert f"{pod.ip}\tetcd-0.etcd.ns1.svc.cluster.local etcd-0" in out
    assert "search ns1.svc.cluster.local svc.cluster.local cluster.local" in out
    assert f"nameserver {netns.settings().bridge_ip}" in out
    assert (data / "new").read_text() == "written\n"  # writes land in the volume source
    # Nothing of it on the host: no mount, no directory, host files untouched, host name kept.
    leftovers = existing(
        DEEP,
        SECRETS,
        TOP,
        "/work/here",
        "/var/lib/etcdop-sbxtest",
        "/etcdop-sbxtest-top",
        "/run/secrets/etcdop-sbxtest.io",
    )
    assert leftovers == []
    pod_dir = str(netns.pod_dir(pod.netns))
    assert not [m for m in host_mounts() if "sbxtest" in m or m.startswith(pod_dir)]
    assert f"{pod.ip}" not in read("/etc/hosts")
    assert os.uname().nodename != "etcd-0"
    running.kill_tree()
    assert await running.wait() == 128 + signal.SIGKILL


async def test_pid_is_the_workload_and_sigterm_reaches_it(
    pod: netns.PodNetwork, tmp_path: Path
) -> None:
    script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    running = await proc.start_container(spec(pod, ["sh", "-c", script], tmp_path, "trap"))
    assert read(f"/proc/{running.pid}/cmdline").split("\0")[:2] == ["sh", "-c"]
    log = tmp_path / "trap.log"
    await wait_until(lambda: "ready" in log.read_text(), 20, "the trap to be set")
    running.signal(signal.SIGTERM)
    assert await running.wait() == 7
    assert "got-term" in log.read_text()
    assert not pid_alive(running.pid)


async def test_exit_codes_and_environment(pod: netns.PodNetwork, tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()
    tool = image / "mytool"
    tool.write_text('#!/bin/sh\necho "tool $GREETING $HOSTNAME"\nexit 3\n')
    tool.chmod(0o755)
    s = spec(pod, ["mytool"], tmp_path, "tool", hostname="h1", env={"GREETING": "hi"})
    s = proc.ContainerSpec(**{**s.__dict__, "path": [str(image)]})  # argv[0] from the image PATH
    running = await proc.start_container(s)
    assert await running.wait() == 3
    assert (tmp_path / "tool.log").read_text() == "tool hi h1\n"


async def test_kill_tree_kills_daemons_and_orphans(pod: netns.PodNetwork, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    script = (
        "setsid sleep 1000 & echo $! > /vol/daemon; "
        "(sleep 1000 & echo $! > /vol/orphan); "
        "exec sleep 1000"
    )
    running = await proc.start_container(
        spec(pod, ["sh", "-c", script], tmp_path, "tree", mounts=[proc.Mount(str(vol), "/vol")])
    )
    await wait_until(
        lambda: (vol / "orphan").exists() and (vol / "daemon").exists(),
        20,
        "the container to start its children",
    )
    daemon = int((vol / "daemon").read_text())
    orphan = int((vol / "orphan").read_text())
    assert pid_alive(daemon) and pid_alive(orphan) and running.running()
    assert {daemon, orphan, running.pid} <= set(running.members())
    running.kill_tree()
    assert not pid_alive(daemon) and not pid_alive(orphan) and not pid_alive(running.pid)
    assert await running.wait() == 128 + signal.SIGKILL


async def test_main_exit_ends_the_whole_container(pod: netns.PodNetwork, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    script = "setsid sleep 1000 & echo $! > /vol/left; exit 0"
    running = await proc.start_container(
        spec(pod, ["sh", "-c", script], tmp_path, "exit", mounts=[proc.Mount(str(vol), "/vol")])
    )
    assert await running.wait() == 0
    left = int((vol / "left").read_text())
    assert not pid_alive(left)


async def test_exec_in_container_shares_its_namespaces(
    pod: netns.PodNetwork, tmp_path: Path
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "marker").write_text("inside\n")
    running = await proc.start_container(
        spec(
            pod,
            ["sleep", "1000"],
            tmp_path,
            "probe",
            hostname="probed",
            env={"K": "v"},
            mounts=[proc.Mount(str(vol), "/var/lib/etcdop-sbxtest/exec")],
        )
    )
    rc, out = await proc.exec_in_container(
        running, ["sh", "-c", "cat /var/lib/etcdop-sbxtest/exec/marker; hostname; echo $K"], 10
    )
    assert (rc, out) == (0, "inside\nprobed\nv\n")
    rc, out = await proc.exec_in_container(running, ["sh", "-c", "exit 4"], 10)
    assert rc == 4
    rc, out = await proc.exec_in_container(running, ["sleep", "30"], 0.5)
    assert rc == -1 and "timed out" in out
    running.kill_tree()
    await running.wait()
    rc, out = await proc.exec_in_container(running, ["true"], 5)
    assert rc == -1 and "not running" in out


async def test_start_errors_name_the_cause(pod: netns.PodNetwork, tmp_path: Path) -> None:
    missing = spec(
        pod, ["true"], tmp_path, "badmount", mounts=[proc.Mount(str(tmp_path / "nope"), "/data")]
    )
    with pytest.raises(proc.ContainerStartError, match="nope"):
        await proc.start_container(missing)
    with pytest.raises(proc.ContainerStartError, match="no-such-binary"):
        await proc.start_container(spec(pod, ["no-such-binary"], tmp_path, "nobin"))
    with pytest.raises(proc.ContainerStartError, match="does not exist"):
        gone = netns.PodNetwork(netns="sbxtst-00000000", ip="10.214.9.9", host_veth="x")
        await proc.start_container(spec(gone, ["true"], tmp_path, "nonet"))


def test_hosts_and_resolv_conf_text() -> None:
    text = proc.hosts_text("10.0.0.5", "web-1", "prod", "web", {"10.0.0.9": ["db", "db.local"]})
    assert "10.0.0.5\tweb-1.web.prod.svc.cluster.local web-1\n" in text
    assert "10.0.0.9\tdb db.local\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "svc" not in proc.hosts_text("10.0.0.5", "solo", "prod", "", {})
    resolv = proc.resolv_conf_text("prod")
    assert resolv.splitlines()[0] == "search prod.svc.cluster.local svc.cluster.local cluster.local"
    assert "options ndots:5" in resolv


async def test_kill_tree_after_exit_spares_a_container_started_since(
    pod: netns.PodNetwork, tmp_path: Path
) -> None:
    """A finished container's mount namespace is freed and its inode number is reused by the
    next one created: a late kill_tree of the finished container (the kubelet makes one after
    every run) must not kill the newcomer. Seen as neighbours dying with 137 on the local node."""
    done = await proc.start_container(spec(pod, ["/bin/sh", "-c", "true"], tmp_path, "done"))
    assert await done.wait() == 0
    for i in range(5):  # the newest namespace tends to get the freed inode number
        other = await proc.start_container(
            spec(pod, ["/bin/sh", "-c", "exec sleep 60"], tmp_path, f"other{i}")
        )
        try:
            done.kill_tree()
            assert other.running(), f"container other{i} was killed by done's kill_tree"
        finally:
            other.kill_tree()
            await other.wait()
