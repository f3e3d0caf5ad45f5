"""Pod networks without Kubernetes: addresses, reachability over the bridge, cut and heal."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.localcluster.node import netns, proc
from e2e.localcluster.node.sandbox_testing import (
    TEST_BRIDGE,
    TEST_BRIDGE_IP,
    TEST_CIDR,
    isolated_sandbox,
    reachable,
    server_argv,
    spec,
    tcp_read,
    wait_until,
)

pytestmark = pytest.mark.imitation  # the older node agent's parts (ETCDOP_NODE=imitation)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[netns.Settings]:
    with isolated_sandbox() as settings:
        yield settings


def ip_in(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


def test_pod_ips_are_distinct_on_the_bridge_and_stable_per_uid(sandbox: netns.Settings) -> None:
    a = netns.create_pod_network("11111111-aaaa-4000-8000-000000000001", "a")
    b = netns.create_pod_network("22222222-bbbb-4000-8000-000000000002", "b")
    assert a.netns == f"{sandbox.prefix}-11111111"
    assert a.ip == "10.214.0.10"  # the first pod address of the CIDR
    assert a.ip != b.ip
    for pod in (a, b):
        addr = ipaddress.ip_address(pod.ip)
        assert addr in ipaddress.ip_network(TEST_CIDR) and not addr.is_loopback
        assert f"inet {pod.ip}/16" in ip_in(pod.netns, "-o", "addr", "show", "dev", "eth0")
    # Idempotent: the same uid gets the same network, even after its netns vanished (reboot).
    assert netns.create_pod_network("11111111-aaaa-4000-8000-000000000001", "a") == a
    subprocess.run(["ip", "netns", "del", a.netns], check=True)
    assert netns.create_pod_network("11111111-aaaa-4000-8000-000000000001", "a") == a
    assert f"inet {a.ip}/16" in ip_in(a.netns, "-o", "addr", "show", "dev", "eth0")
    # The allocation is on disk, so another agent process finds it.
    assert netns.allocations()["22222222-bbbb-4000-8000-000000000002"] == b.ip
    assert (sandbox.root / "ipam.json").exists()


def test_pod_routes_only_through_the_bridge_and_host_does_not_forward(
    sandbox: netns.Settings,
) -> None:
    pod = netns.create_pod_network("33333333-cccc-4000-8000-000000000003", "c")
    routes = [r.strip() for r in ip_in(pod.netns, "route", "show").splitlines()]
    assert f"default via {TEST_BRIDGE_IP} dev eth0" in routes
    assert all(r.startswith(("default via " + TEST_BRIDGE_IP, "10.214.0.0/16")) for r in routes)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    link = subprocess.run(
        ["ip", "-o", "link", "show", "dev", pod.host_veth],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"master {TEST_BRIDGE}" in link


async def test_two_pods_reach_each_other_by_ip(sandbox: netns.Settings, tmp_path: Path) -> None:
    a = netns.create_pod_network("44444444-dddd-4000-8000-000000000004", "server")
    b = netns.create_pod_network("55555555-eeee-4000-8000-000000000005", "client")
    server = await proc.start_container(
        spec(a, server_argv(8080, "hello"), tmp_path, "server", hostname="server")
    )
    await wait_until(lambda: reachable(a.ip, 8080), 20, f"server on {a.ip}:8080")
    assert tcp_read(a.ip, 8080) == "server hello"  # host -> pod
    client = await proc.start_container(
        spec(
            b,
            [
                "python3",
                "-c",
                "import socket,sys; s=socket.create_connection((sys.argv[1],8080),5);"
                "print(s.recv(100).decode())",
                a.ip,
            ],
            tmp_path,
            "client",
            hostname="client",
        )
    )
    assert await client.wait() == 0
    assert (tmp_path / "client.log").read_text().strip() == "server hello"  # pod -> pod
    server.signal(15)
    assert await server.wait() == 128 + 15


async def test_cut_and_heal_change_reachability(sandbox: netns.Settings, tmp_path: Path) -> None:
    uid = "66666666-ffff-4000-8000-000000000006"
    pod = netns.create_pod_network(uid, "cut")
    other = netns.create_pod_network("77777777-ffff-4000-8000-000000000007", "other")
    server = await proc.start_container(spec(pod, server_argv(9090), tmp_path, "srv"))
    await wait_until(lambda: reachable(pod.ip, 9090), 20, "server before the cut")

    netns.cut_pod_network(uid)
    assert netns.is_cut(uid)
    assert not await reachable(pod.ip, 9090)  # from the host
    probe = [
        "python3",
        "-c",
        "import socket,sys; socket.create_connection((sys.argv[1],9090),1).close()",
        pod.ip,
    ]
    blocked = await proc.start_container(spec(other, probe, tmp_path, "probe1"))
    assert await blocked.wait() != 0  # from another pod

    netns.heal_pod_network(uid)
    assert not netns.is_cut(uid)
    await wait_until(lambda: reachable(pod.ip, 9090), 20, "server after healing")
    allowed = await proc.start_container(spec(other, probe, tmp_path, "probe2"))
    assert await allowed.wait() == 0
    server.kill_tree()
    await server.wait()


def test_delete_pod_network_frees_everything(sandbox: netns.Settings) -> None:
    uid = "88888888-0000-4000-8000-000000000008"
    pod = netns.create_pod_network(uid, "gone")
    netns.delete_pod_network(uid)
    assert pod.netns not in netns.list_netns()
    assert (
        subprocess.run(["ip", "link", "show", "dev", pod.host_veth], capture_output=True).returncode
        != 0
    )
    assert uid not in netns.allocations()
    netns.delete_pod_network(uid)  # idempotent
    # The freed address is the lowest free one again: the next pod gets it.
    again = netns.create_pod_network("99999999-0000-4000-8000-000000000009", "next")
    assert again.ip == pod.ip


def test_short_ids_and_prefix_rules() -> None:
    assert netns.short_id("0a1b2c3d-1111-2222-3333-444455556666") == "0a1b2c3d"
    assert len(netns.short_id("not-a-uuid")) == 8
    assert netns.short_id("not-a-uuid") != netns.short_id("not-a-uuid2")
    with pytest.raises(ValueError, match="prefix"):
        netns.configure(prefix="much-too-long")
