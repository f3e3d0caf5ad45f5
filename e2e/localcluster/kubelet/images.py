"""Container images without a registry or a docker daemon: OCI image tarballs written here from
the static binaries in the cache, tagged with the official names so the product's defaults work
(`registry.k8s.io/pause:<v>`, `gcr.io/etcd-development/etcd:v<v>`), imported with `ctr`.

Every byte is deterministic (fixed mtimes, owners, order): the same binaries give the same image
digest, so re-importing is a no-op for containerd.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import etcdop
from e2e.localcluster.binaries import ETCD_VERSIONS, VERSIONS, bin_path, cache_dir

PAUSE_VERSION = VERSIONS["PAUSE_VERSION"]
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_VERSION}"
ETCD_REPO = "gcr.io/etcd-development/etcd"
PATH_ENV = "PATH=/usr/local/bin:/usr/bin:/bin"
# The product's image as `make image` saves it (`docker save`), and the name member pods ask
# for it by (the agent sidecar's default image): the tarball is imported under both names.
PRODUCT_TARBALL = Path(os.environ.get("ETCDOP_IMAGE_WORK", "/var/tmp/etcdop-image")) / "image.tar"
PRODUCT_IMAGE = f"ghcr.io/etcdop/etcdop:{etcdop.__version__}"


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@dataclass
class Image:
    """One image: its name, the files of its single layer, and its config."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)  # path in image -> host file
    dirs: dict[str, int] = field(default_factory=dict)  # path in image -> mode
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    user: str = ""


def _layer(image: Image) -> bytes:
    buf = io.BytesIO()
    entries: list[tuple[str, Path | int]] = [(d, m) for d, m in image.dirs.items()]
    entries += list(image.files.items())
    # Parent directories of files first, each once, sorted: a stable tar.
    parents = {str(Path(p).parent).lstrip("/") for p in image.files}
    for p in sorted(parents):
        parts = Path(p).parts
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in image.dirs:
                entries.append((d, 0o755))
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, src in sorted(entries, key=lambda e: e[0]):
            name = path.lstrip("/")
            if name in seen:
                continue
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if isinstance(src, int):
                info.type = tarfile.DIRTYPE
                info.mode = src
                tar.addfile(info)
            else:
                data = src.read_bytes()
                info.size = len(data)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


def write_oci_tarball(image: Image, out: Path) -> Path:
    """IMAGE as an OCI image-layout tarball at OUT (what `ctr images import` reads)."""
    blobs: dict[str, bytes] = {}
    layer = _layer(image)
    layer_digest = _blob(blobs, layer)
    conf: dict[str, object] = {"Env": image.env, "WorkingDir": "/"}
    if image.entrypoint:
        conf["Entrypoint"] = image.entrypoint
    if image.cmd:
        conf["Cmd"] = image.cmd
    if image.user:
        conf["User"] = image.user
    config = json.dumps({
        "architecture": arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": conf,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "etcdop e2e images.py"}],
    }, sort_keys=True).encode()
    config_digest = _blob(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }, sort_keys=True).encode()
    manifest_digest = _blob(blobs, manifest)
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest),
            "platform": {"architecture": arch(), "os": "linux"},
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": image.name.rsplit(":", 1)[1],
            },
        }],
    }, sort_keys=True).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for digest, data in blobs.items():
        files[f"blobs/sha256/{digest.split(':', 1)[1]}"] = data
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out


def pause_image() -> Image:
    pause = cache_dir() / "bin" / f"pause-{PAUSE_VERSION}" / "pause"
    if not pause.is_file():
        raise FileNotFoundError(f"{pause} is missing: run `bash e2e/localcluster/build.sh node`")
    return Image(PAUSE_IMAGE, files={"/pause": pause}, entrypoint=["/pause"], user="65535:65535")


def etcd_image(version: str) -> Image:
    """Laid out as the official image: binaries in /usr/local/bin, data under /var/lib/etcd."""
    v = version if version.startswith("v") else f"v{version}"
    return Image(
        f"{ETCD_REPO}:{v}",
        files={f"/usr/local/bin/{b}": bin_path(b, v) for b in ("etcd", "etcdctl", "etcdutl")},
        dirs={"/tmp": 0o1777, "/var": 0o755, "/var/etcd": 0o700, "/var/lib": 0o755,
              "/var/lib/etcd": 0o700},
        cmd=["/usr/local/bin/etcd"],
    )


def default_images() -> list[Image]:
    return [pause_image(), *(etcd_image(v) for v in ETCD_VERSIONS)]


def build_all(out_dir: Path, images: Iterable[Image] | None = None) -> list[Path]:
    """Write every image's tarball under OUT_DIR (skipping those already written)."""
    paths = []
    for image in images if images is not None else default_images():
        name = image.name.replace("/", "_").replace(":", "_") + ".tar"
        paths.append(write_oci_tarball(image, out_dir / name))
    return paths
