"""Pieces of the real node that need no root: OCI image tarballs, CNI and kubelet settings."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from e2e.localcluster.kubelet.images import Image, write_oci_tarball
from e2e.localcluster.kubelet.nodes import Node, cni_config, kubelet_config


def members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            if f is not None:
                out[m.name] = f.read()
    return out


def test_oci_tarball_is_deterministic_and_named_for_containerd(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"\x7fELF not really")
    image = Image("registry.example/tool:v1", files={"/usr/local/bin/tool": exe},
                  dirs={"/tmp": 0o1777}, cmd=["/usr/local/bin/tool"])
    a = write_oci_tarball(image, tmp_path / "a.tar")
    b = write_oci_tarball(image, tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes()

    files = members(a)
    index = json.loads(files["index.json"])
    [desc] = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "registry.example/tool:v1"
    manifest = json.loads(files[f"blobs/sha256/{desc['digest'].split(':')[1]}"])
    # Every blob is stored under its own digest.
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Cmd"] == ["/usr/local/bin/tool"]
    # Uncompressed layer: its diff_id is its digest.
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    layer = tmp_path / "layer.tar"
    layer.write_bytes(files[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"])
    with tarfile.open(layer) as tar:
        entries = {m.name: m for m in tar.getmembers()}
    assert entries["usr/local/bin/tool"].mode == 0o755
    assert entries["tmp"].mode == 0o1777 and entries["usr/local/bin"].isdir()
    assert {m.mtime for m in entries.values()} == {0}


def test_nodes_get_disjoint_pod_ranges_and_their_own_addresses(tmp_path: Path) -> None:
    nodes = [Node(f"local-{i}", i, tmp_path) for i in range(3)]
    ranges = [cni_config(n)["plugins"][0]["ipam"]["ranges"][0][0] for n in nodes]
    starts = [r["rangeStart"] for r in ranges]
    assert starts == ["10.213.1.2", "10.213.2.2", "10.213.3.2"]
    assert {r["subnet"] for r in ranges} == {"10.213.0.0/16"}  # one L2 segment, one bridge
    bridge = cni_config(nodes[0])["plugins"][0]
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False  # no ip_forward, no NAT

    cfgs = [kubelet_config(n, tmp_path, tmp_path, tmp_path, tmp_path) for n in nodes]
    assert [c["address"] for c in cfgs] == ["10.213.0.2", "10.213.0.3", "10.213.0.4"]
    assert len({c["cgroupRoot"] for c in cfgs}) == 3
    assert len({c["containerRuntimeEndpoint"] for c in cfgs}) == 3
    assert all(c["protectKernelDefaults"] and c["failCgroupV1"] is False for c in cfgs)
