"""Container launcher: enter the pod netns, build a private root with the volumes, exec.

Run by proc.start_container as `python -I -S launcher.py SPEC_FILE STATUS_FD` (standard library
only, so it starts fast and sees nothing of the agent). It replaces itself with the workload, so the
pid the agent holds is the workload's. STATUS_FD is a Unix socket to the agent: just before exec it
carries the container's mount namespace (so the agent can find every process of the container even
if the workload exits at once); any failure before exec is written to it instead, so the agent can
report it rather than guess from an exit code. It closes on exec.

Why a new root: a mount target such as /var/lib/etcd may not exist on the host, and creating it
there would leave directories behind. The root here is a tmpfs whose entries are bind mounts of the
host's; a missing directory is made by "mirroring" its parent (a tmpfs over it holding bind mounts
of the parent's entries), so the host filesystem is never written and every mount dies with the
container's mount namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import stat
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
STAGE = "/.etcdop-stage"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
        f"mount {source} on {target}",
    )


def umount_detach(target: str) -> None:
    _check(_libc.umount2(_b(target), MNT_DETACH), f"umount {target}")


class Root:
    """The container's view of the filesystem, built inside its own mount namespace."""

    def __init__(self) -> None:
        self.owned: set[str] = {"/"}  # directories on a tmpfs of ours: free to create entries in
        self.volumes: list[str] = []  # mount targets: creating inside them is the volume's business
        self.stages = 0

    def _mirror_entry(self, src: str, dst: str) -> None:
        st = os.lstat(src)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(dst, stat.S_IMODE(st.st_mode))
            mount(src, dst, None, MS_BIND | MS_REC)
        else:
            with open(dst, "w"):
                pass
            mount(src, dst, None, MS_BIND | MS_REC)

    def build(self, new_root: str) -> None:
        """Make NEW_ROOT a tmpfs mirroring the host root, then chroot into it."""
        mount("tmpfs", new_root, "tmpfs", 0, "mode=0755")
        for name in sorted(os.listdir("/")):
            # An entry we cannot mirror (odd file type) is simply absent in the container.
            with contextlib.suppress(OSError):
                self._mirror_entry("/" + name, f"{new_root}/{name}")
        os.chroot(new_root)
        os.chdir("/")
        # Copies of other pods' netns mounts would keep their namespaces (and veths) alive.
        for path in ("/run/netns", new_root):
            with contextlib.suppress(OSError):
                umount_detach(path)

    def _within_volume(self, path: str) -> bool:
        return any(path == v or path.startswith(v.rstrip("/") + "/") for v in self.volumes)

    def _make_writable(self, directory: str) -> None:
        """Let us create entries in DIRECTORY without touching the host filesystem."""
        if directory in self.owned or self._within_volume(directory):
            return
        self.stages += 1
        stage = f"{STAGE}/{self.stages}"
        os.makedirs(stage)
        mount(directory, stage, None, MS_BIND | MS_REC)
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        mount("tmpfs", directory, "tmpfs", 0, f"mode={mode:o}")
        for name in os.listdir(stage):
            with contextlib.suppress(OSError):
                self._mirror_entry(f"{stage}/{name}", f"{directory}/{name}")
        umount_detach(stage)
        os.rmdir(stage)
        self.owned.add(directory)

    def ensure(self, path: str, directory: bool) -> str:
        """PATH (symlinks resolved in the container's view) exists as a dir or a file; return it."""
        real = os.path.realpath(path)
        if os.path.lexists(real):
            return real
        parts = [p for p in real.split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            nxt = os.path.join(current, part)
            if not os.path.lexists(nxt):
                self._make_writable(current)
                last = i == len(parts) - 1
                if last and not directory:
                    with open(nxt, "w"):
                        pass
                else:
                    os.mkdir(nxt, 0o755)
                    if current in self.owned:
                        self.owned.add(nxt)
            current = os.path.realpath(nxt)
        return real

    def bind(self, source: str, target: str, read_only: bool) -> None:
        if not os.path.exists(source):
            raise FileNotFoundError(f"mount source {source} (for {target}) does not exist")
        real = self.ensure(target, os.path.isdir(source))
        mount(source, real, None, MS_BIND | MS_REC)
        if read_only:
            mount(None, real, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        self.volumes.append(real)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(STAGE)


def launch(spec: dict[str, Any], status: socket.socket) -> None:
    netns = str(spec["netns_path"])
    fd = os.open(netns, os.O_RDONLY)
    _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare mount+uts namespaces")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    socket.sethostname(str(spec["hostname"]))
    root = Root()
    # Volume sources are host paths: resolve them before the root changes (they stay reachable).
    mounts = [
        (os.path.realpath(str(m["source"])), str(m["target"]), bool(m["read_only"]))
        for m in spec["mounts"]
    ]
    root.build(str(spec["root"]))
    # Parents before children: a mount inside another volume lands in that volume.
    mounts.sort(key=lambda m: os.path.normpath(m[1]).count("/"))
    for source, target, read_only in mounts:
        root.bind(source, target, read_only)
    root.finish()
    workdir = spec.get("workdir")
    if workdir:
        os.chdir(root.ensure(str(workdir), True))
    env = {str(k): str(v) for k, v in spec["env"].items()}
    argv = [str(a) for a in spec["argv"]]
    ns_fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    socket.send_fds(status, [b"ns"], [ns_fd])
    os.close(ns_fd)
    os.execvpe(argv[0], argv, env)


def main() -> None:
    spec_path, status_fd = sys.argv[1], int(sys.argv[2])
    os.set_inheritable(status_fd, False)  # closes on exec: EOF tells the agent "started"
    status = socket.socket(fileno=status_fd)
    try:
        with open(spec_path) as f:
            spec = json.load(f)
        os.unlink(spec_path)  # it holds the environment (maybe secrets)
        launch(spec, status)
    except BaseException as exc:  # everything must reach the agent
        message = f"{type(exc).__name__}: {exc}"
        status.sendall(b"error:" + message.encode(errors="replace"))
        sys.stderr.write(f"etcdop launcher: {message}\n")
        os._exit(127)


if __name__ == "__main__":
    main()
