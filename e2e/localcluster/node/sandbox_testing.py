"""Helpers for the sandbox tests: an isolated sandbox (own bridge, CIDR and prefix) and probes.

The sandbox tests must not disturb a local node that runs at the same time on this machine, so
they use a bridge, an address range and a name prefix of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from e2e.localcluster.node import netns, proc

TEST_PREFIX = "sbxtst"
TEST_BRIDGE = "sbxtst0"
TEST_BRIDGE_IP = "10.214.0.1"
TEST_CIDR = "10.214.0.0/16"

# A TCP server that answers every connection with "<hostname> <text of argv[2] or ''>" and closes.
SERVER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.sendall((socket.gethostname() + ' ' + (sys.argv[2] if len(sys.argv) > 2 else '')"
    ").encode())\n"
    "    c.close()\n"
)


def server_argv(port: int, text: str = "") -> list[str]:
    return [sys.executable, "-c", SERVER, str(port), text]


@contextlib.contextmanager
def isolated_sandbox() -> Iterator[netns.Settings]:
    """Configure the test sandbox for the block; tear it down before (leftovers) and after."""
    previous = netns.settings()
    current = netns.configure(
        prefix=TEST_PREFIX,
        bridge=TEST_BRIDGE,
        bridge_ip=TEST_BRIDGE_IP,
        cidr=TEST_CIDR,
        state_dir=None,
    )
    netns.teardown_all()
    try:
        yield current
    finally:
        try:
            netns.teardown_all()
        finally:
            netns.configure(
                **{
                    f: getattr(previous, f)
                    for f in ("prefix", "bridge", "bridge_ip", "cidr", "state_dir")
                }
            )


def spec(
    net: netns.PodNetwork,
    argv: list[str],
    log_dir: Path,
    name: str,
    hostname: str = "pod",
    mounts: list[proc.Mount] | None = None,
    workdir: str | None = None,
    env: dict[str, str] | None = None,
    subdomain: str = "",
    namespace: str = "default",
) -> proc.ContainerSpec:
    return proc.ContainerSpec(
        argv=argv,
        env=env or {},
        path=[],
        netns=net.netns,
        hostname=hostname,
        mounts=mounts or [],
        workdir=workdir,
        log_path=str(log_dir / f"{name}.log"),
        name=name,
        subdomain=subdomain,
        namespace=namespace,
    )


def tcp_read(ip: str, port: int, timeout: float = 2.0) -> str:
    """Connect from the host (or the caller's netns) and read until the server closes."""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        chunks = []
        while data := s.recv(4096):
            chunks.append(data)
    return b"".join(chunks).decode()


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool],
    timeout: float,  # noqa: ASYNC109 - a deadline for polling, not for one awaited call
    what: str,
) -> None:
    """Poll CHECK (sync or async; exceptions mean "not yet") until true, else fail naming WHAT."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
        except Exception as exc:  # a check that raises is simply not satisfied yet
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.05)


async def reachable(ip: str, port: int) -> bool:
    try:
        await asyncio.to_thread(tcp_read, ip, port, 1.0)
    except OSError:
        return False
    return True


def existing(*paths: str) -> list[str]:
    """Which of PATHS exist on the host (leftovers a container must not create)."""
    return [p for p in paths if os.path.lexists(p)]


def read(path: str | Path) -> str:
    return Path(path).read_text()


def host_mounts() -> list[str]:
    return netns.mount_points()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
