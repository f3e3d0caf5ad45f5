"""Containers as local processes: each in its pod's netns, with its own mount and UTS namespaces.

The workload is started through launcher.py, which execs it, so `Running.pid` is the real workload
and signals (SIGTERM on graceful deletion) reach it. A container's processes are found by its mount
namespace (every process it forks shares it), so `kill_tree` gets daemons and orphans too; the
Running object holds that namespace open so its identity cannot be reused while we may still kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from e2e.localcluster import config
from e2e.localcluster.node import netns as netns_mod

LAUNCHER = Path(__file__).with_name("launcher.py")
DEFAULT_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    argv: list[str]
    env: dict[str, str]
    path: list[str]  # the image dirs (the "image PATH"), searched first for argv[0]
    netns: str
    hostname: str
    mounts: list[Mount]
    workdir: str | None
    log_path: str  # stdout+stderr appended here
    name: str = ""  # container name: names its record (faults find it by pod uid + name)
    namespace: str = "default"  # pod namespace: first DNS search domain
    subdomain: str = ""  # pod spec.subdomain: the FQDN in /etc/hosts
    extra_hosts: dict[str, list[str]] = field(default_factory=dict)  # ip -> names (hostAliases)


class ContainerStartError(RuntimeError):
    """The launcher could not set the container up (bad mount, missing executable, ...)."""


def _container_name(spec: ContainerSpec) -> str:
    raw = spec.name or Path(spec.log_path).stem or "container"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def container_dir(netns: str, name: str) -> Path:
    return netns_mod.pod_dir(netns) / "containers" / name


def resolv_conf_text(namespace: str) -> str:
    d = config.CLUSTER_DOMAIN
    return (
        f"search {namespace}.svc.{d} svc.{d} {d}\n"
        f"nameserver {netns_mod.settings().bridge_ip}\n"
        "options ndots:5\n"
    )


def hosts_text(
    ip: str | None, hostname: str, namespace: str, subdomain: str, extra: dict[str, list[str]]
) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if ip:
        names = [hostname]
        if subdomain:
            names.insert(0, f"{hostname}.{subdomain}.{namespace}.svc.{config.CLUSTER_DOMAIN}")
        lines.append(f"{ip}\t{' '.join(names)}")
    for addr, names in extra.items():
        lines.append(f"{addr}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def _proc_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgrp, session, starttime) of PID, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def _ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _alive(pid: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def processes_in_mount_ns(inode: int) -> list[int]:
    me = os.getpid()
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and int(p) != me and _ns_inode(int(p), "mnt") == inode
    ]


class Running:
    """A started container: its workload pid, exit code, signals and a kill of all it started."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        spec: ContainerSpec,
        record: Path,
        mnt_fd: int | None,
    ) -> None:
        self.process = process
        self.pid: int = process.pid
        self.spec = spec
        self.record = record
        self.env = _container_env(spec)
        self.exit_code: int | None = None
        st = _proc_stat(self.pid)
        self._starttime = st[4] if st else None
        self._mnt_fd = mnt_fd  # held open: the namespace (and its inode) cannot be reused
        self.mnt_ns = os.fstat(self._mnt_fd).st_ino if self._mnt_fd is not None else None

    def __repr__(self) -> str:
        return f"<Running {_container_name(self.spec)} pid={self.pid} netns={self.spec.netns}>"

    def running(self) -> bool:
        return self.exit_code is None and _alive(self.pid)

    async def wait(self) -> int:
        """The workload's exit code (128+N when killed by signal N, as a container runtime says).

        When the workload exits, whatever it left running in the container is killed, as the end of
        a container's PID namespace would do.
        """
        rc = await self.process.wait()
        self.exit_code = 128 - rc if rc < 0 else rc
        await asyncio.to_thread(self.kill_tree)
        self._release()
        return self.exit_code

    def signal(self, sig: int) -> None:
        """Send SIG to the workload only (SIGTERM on graceful deletion)."""
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def members(self) -> list[int]:
        """Live processes of this container: its mount namespace, plus the workload's session.

        The namespace's inode number identifies it only while we hold it open: once released
        (after the exit, when everything in it was killed) the kernel gives that number to the
        next namespace created, another container's, which a late kill must not reach."""
        found: set[int] = set()
        if self._mnt_fd is not None and self.mnt_ns is not None:
            found.update(processes_in_mount_ns(self.mnt_ns))
        st = _proc_stat(self.pid)
        if self.exit_code is None and st is not None and st[4] == self._starttime:
            found.add(self.pid)
            for p in os.listdir("/proc"):
                if p.isdigit():
                    other = _proc_stat(int(p))
                    if other is not None and self.pid in (other[2], other[3]):
                        found.add(int(p))
        found.discard(os.getpid())
        return sorted(p for p in found if _alive(p))

    def kill_tree(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of the container until none is left (blocks up to TIMEOUT)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.members()
            if not pids:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r}: processes {pids} survive SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def _release(self) -> None:
        if self._mnt_fd is not None:
            os.close(self._mnt_fd)
            self._mnt_fd = None
        self.record.unlink(missing_ok=True)

    def __del__(self) -> None:
        if self._mnt_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._mnt_fd)


def _container_env(spec: ContainerSpec) -> dict[str, str]:
    env = dict(spec.env)
    env.setdefault("PATH", ":".join([*spec.path, *DEFAULT_PATH]))
    env.setdefault("HOSTNAME", spec.hostname)
    env.setdefault("HOME", "/root")
    return env


def _read_status(sock: socket.socket) -> tuple[bytes, int | None]:
    """The launcher's report: (error text or b"", the container's mount-namespace fd)."""
    chunks, ns_fd = [], None
    with sock:
        while True:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
            for fd in fds:
                if ns_fd is None:
                    ns_fd = fd
                else:
                    os.close(fd)
            if not data and not fds:
                break
            chunks.append(data)
    text = b"".join(chunks)
    error = text.split(b"error:", 1)[1] if b"error:" in text else b""
    return error, ns_fd


def _prepare(spec: ContainerSpec, cdir: Path) -> Path:
    """Write the pod's hosts and resolv.conf and the launcher's spec file (mode 0600: env)."""
    (cdir / "root").mkdir(parents=True, exist_ok=True)
    pdir = netns_mod.pod_dir(spec.netns)
    ip = netns_mod.pod_ip_of_netns(spec.netns)
    hosts = hosts_text(ip, spec.hostname, spec.namespace, spec.subdomain, spec.extra_hosts)
    _write(pdir / "hosts", hosts)
    _write(pdir / "resolv.conf", resolv_conf_text(spec.namespace))
    mounts = [asdict(m) for m in spec.mounts]
    targets = {os.path.normpath(m.target) for m in spec.mounts}
    for fname in ("hosts", "resolv.conf"):
        if f"/etc/{fname}" not in targets:
            mounts.append(
                {"source": str(pdir / fname), "target": f"/etc/{fname}", "read_only": False}
            )
    launch_spec = {
        "netns_path": str(netns_mod.NETNS_DIR / spec.netns),
        "hostname": spec.hostname,
        "root": str(cdir / "root"),
        "mounts": mounts,
        "workdir": spec.workdir,
        "env": _container_env(spec),
        "argv": spec.argv,
    }
    spec_file = cdir / "launch.json"
    fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(launch_spec, f)
    Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
    return spec_file


async def start_container(spec: ContainerSpec) -> Running:
    """Start SPEC in its pod's netns; returns once the workload runs (raises if setup failed)."""
    netns_path = netns_mod.NETNS_DIR / spec.netns
    if not netns_path.exists():
        raise ContainerStartError(
            f"container {_container_name(spec)}: netns {spec.netns} does not exist: "
            "create the pod network (create_pod_network) first"
        )
    name = _container_name(spec)
    cdir = container_dir(spec.netns, name)
    spec_file = _prepare(spec, cdir)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(LAUNCHER),
            str(spec_file),
            str(theirs.fileno()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": ":".join(DEFAULT_PATH)},
            cwd="/",
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
        os.close(log)
    error, mnt_fd = await asyncio.to_thread(_read_status, ours)
    if error or mnt_fd is None:
        if mnt_fd is not None:
            os.close(mnt_fd)
        rc = await process.wait()
        spec_file.unlink(missing_ok=True)
        why = error.decode(errors="replace") or f"launcher exited with {rc} before exec"
        raise ContainerStartError(f"container {name} in netns {spec.netns}: {why}")
    record = cdir / "state.json"
    running = Running(process, spec, record, mnt_fd)
    _write(
        record,
        json.dumps(
            {
                "pid": running.pid,
                "starttime": running._starttime,
                "mnt_ns": running.mnt_ns,
                "argv": spec.argv,
                "log_path": spec.log_path,
                "mounts": [asdict(m) for m in spec.mounts],
            }
        ),
    )
    return running


async def exec_in_container(
    running: Running,
    argv: list[str],
    timeout: float,  # noqa: ASYNC109 - the probe's timeoutSeconds, part of the interface
) -> tuple[int, str]:
    """Run ARGV in the container's namespaces and root with its env; (exit code, stdout+stderr).

    A timeout kills the command and returns exit code -1 with a message, as a failed probe.
    """
    if not running.running():
        return -1, f"container {_container_name(running.spec)} is not running"
    nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
    process = await asyncio.create_subprocess_exec(
        nsenter,
        "-t",
        str(running.pid),
        "-m",
        "-u",
        "-n",
        "-r",
        "-w",
        "--",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=running.env,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return -1, f"exec {argv[0]} timed out after {timeout:g}s"
    rc = process.returncode if process.returncode is not None else -1
    return (128 - rc if rc < 0 else rc), out.decode(errors="replace")


def container_record(uid: str, name: str) -> dict[str, object] | None:
    """What the sandbox recorded about a running container of pod UID (pid, mounts, ...)."""
    path = container_dir(netns_mod.netns_name(uid), name) / "state.json"
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data


def container_records(uid: str) -> dict[str, dict[str, object]]:
    base = netns_mod.pod_dir(netns_mod.netns_name(uid)) / "containers"
    out: dict[str, dict[str, object]] = {}
    for d in sorted(base.glob("*/state.json")) if base.exists() else []:
        out[d.parent.name] = json.loads(d.read_text())
    return out
