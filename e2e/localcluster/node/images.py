"""Images as directories: a YAML mapping file names which directory plays each image's PATH.

An entry maps an image reference (``name:tag``) to either a directory, or a table with
``path`` (one or more directories), ``entrypoint`` and ``cmd`` (lists, as in an OCI image config).
Without a table, the entrypoint is read from an ``ENTRYPOINT`` file in the first directory (one
argument per line) when present; otherwise the image has no entrypoint and a container must give
``command`` (or ``args``, whose first word is then the program). Built-in entries cover the etcd
builds in the binaries cache and the project's own ``etcdop:<tag>`` image.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.localcluster.binaries import ETCD_VERSIONS, cache_dir

ETCD_REPOS = ("gcr.io/etcd-development/etcd", "quay.io/coreos/etcd")
ETCDOP_REPOS = ("etcdop", "localhost/etcdop", "ghcr.io/etcdop/etcdop")


@dataclass(frozen=True)
class Image:
    """What a resolved image gives a container: its PATH directories and its default argv."""

    ref: str
    path: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


@dataclass
class ImageNotFound(Exception):
    ref: str
    reason: str = "ErrImagePull"
    detail: str = field(default="")

    def __str__(self) -> str:
        return f"image {self.ref!r} is not in the node's image map{self.detail}"


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag][@digest]`` -> (repo, tag); a missing tag is ``latest`` as with a registry."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def etcdop_image_dir() -> Path:
    """A directory holding only the ``etcdop`` entry point of the interpreter running us."""
    found = shutil.which("etcdop", path=str(Path(sys.executable).parent))
    return Path(found).parent if found else Path(sys.executable).parent


def builtin_image(ref: str) -> Image | None:
    repo, tag = split_ref(ref)
    if repo in ETCD_REPOS:
        d = cache_dir() / "bin" / f"etcd-{tag}"
        if (d / "etcd").is_file():
            # The upstream images have no ENTRYPOINT and CMD /usr/local/bin/etcd.
            return Image(ref, (str(d),), (), ("etcd",))
        return None
    if repo in ETCDOP_REPOS:
        # As the Dockerfile builds it: the package, plus etcd's tools for the restore drill.
        tools = cache_dir() / "bin" / f"etcd-{ETCD_VERSIONS[0]}"
        return Image(ref, (str(etcdop_image_dir()), str(tools)), ("etcdop",), ())
    return None


def _entry_image(ref: str, entry: Any, base: Path) -> Image:
    if isinstance(entry, str):
        entry = {"path": [entry]}
    if not isinstance(entry, dict):
        raise ValueError(f"image map entry {ref!r}: want a directory or a table, got {entry!r}")
    paths = entry.get("path", [])
    if isinstance(paths, str):
        paths = [paths]
    dirs = tuple(str((base / os.path.expanduser(p)).resolve()) for p in paths)
    if not dirs:
        raise ValueError(f"image map entry {ref!r}: `path` is empty; give the image directory")
    entrypoint = entry.get("entrypoint")
    if entrypoint is None:
        ep_file = Path(dirs[0]) / "ENTRYPOINT"
        entrypoint = ep_file.read_text().splitlines() if ep_file.is_file() else []
    cmd = tuple(str(a) for a in entry.get("cmd", []))
    return Image(ref, dirs, tuple(str(a) for a in entrypoint), cmd)


class ImageMap:
    """Resolves image references; re-reads the mapping file when it changes, so tests can add
    images while the agent runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._entries: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._entries, self._mtime = {}, None
            return self._entries
        if mtime != self._mtime:
            doc = yaml.safe_load(self.path.read_text()) or {}
            images = doc.get("images", doc) if isinstance(doc, dict) else {}
            self._entries = dict(images or {})
            self._mtime = mtime
        return self._entries

    def resolve(self, ref: str) -> Image:
        entries = self._load()
        repo, tag = split_ref(ref)
        for key in (ref, f"{repo}:{tag}"):
            if key in entries:
                image = _entry_image(key, entries[key], self.path.parent)
                missing = [d for d in image.path if not Path(d).is_dir()]
                if missing:
                    raise ImageNotFound(ref, detail=f": directory {missing[0]} does not exist")
                return image
        builtin = builtin_image(ref)
        if builtin is None:
            raise ImageNotFound(
                ref, detail=f": add it to {self.path} (image: directory) or build it first"
            )
        return builtin


def add_image(
    map_file: Path,
    ref: str,
    directory: Path,
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
) -> None:
    """Add or replace one entry of the mapping file atomically (the agent may be reading it)."""
    try:
        doc = yaml.safe_load(map_file.read_text()) or {}
    except FileNotFoundError:
        doc = {}
    images = doc.setdefault("images", {})
    entry: dict[str, Any] = {"path": [str(directory)]}
    if entrypoint is not None:
        entry["entrypoint"] = entrypoint
    if cmd is not None:
        entry["cmd"] = cmd
    images[ref] = entry
    map_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=map_file.parent, prefix=".images-")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f)
    os.replace(tmp, map_file)


def container_argv(image: Image, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Kubernetes rules: ``command`` replaces the ENTRYPOINT (and drops CMD); ``args`` replaces
    CMD. An empty result is an error the caller reports as CreateContainerError."""
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args else image.cmd)]


def resolve_program(argv0: str, image: Image) -> str:
    """Find ARGV0 in the image's PATH first. An absolute path that does not exist on the host
    (``/usr/local/bin/etcd``) is looked up by its base name, as if the image were the root."""
    if "/" not in argv0:
        for d in image.path:
            candidate = Path(d) / argv0
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        return argv0
    if os.path.isabs(argv0) and not os.path.exists(argv0):
        for d in image.path:
            candidate = Path(d) / os.path.basename(argv0)
            if candidate.is_file():
                return str(candidate)
    return argv0
