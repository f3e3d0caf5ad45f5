"""Image mapping and command/args rules of the local node."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.localcluster.node.images import (
    Image,
    ImageMap,
    ImageNotFound,
    add_image,
    container_argv,
    resolve_program,
    split_ref,
)


def test_split_ref() -> None:
    assert split_ref("quay.io/coreos/etcd:v3.6.16") == ("quay.io/coreos/etcd", "v3.6.16")
    assert split_ref("localhost:5000/web") == ("localhost:5000/web", "latest")
    assert split_ref("web:1@sha256:abc") == ("web", "1")


def test_command_and_args_follow_kubernetes() -> None:
    img = Image("x", ("/img",), ("/entry", "-v"), ("serve",))
    assert container_argv(img, None, None) == ["/entry", "-v", "serve"]
    assert container_argv(img, None, ["other"]) == ["/entry", "-v", "other"]
    assert container_argv(img, ["sh", "-c"], None) == ["sh", "-c"]
    assert container_argv(img, ["sh", "-c"], ["true"]) == ["sh", "-c", "true"]
    assert container_argv(Image("y", ("/i",)), None, None) == []


def test_map_file_entries_and_entrypoint_file(tmp_path: Path) -> None:
    img_dir = tmp_path / "web"
    img_dir.mkdir()
    (img_dir / "ENTRYPOINT").write_text("server\n--port=8080\n")
    prog = img_dir / "server"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    mapping = tmp_path / "images.yaml"
    images = ImageMap(mapping)
    with pytest.raises(ImageNotFound, match="web:1"):
        images.resolve("web:1")
    add_image(mapping, "web:1", img_dir)
    image = images.resolve("web:1")
    assert image.entrypoint == ("server", "--port=8080")
    assert resolve_program("server", image) == str(prog)
    assert resolve_program("/usr/local/bin/server", image) == str(prog)
    assert resolve_program("/bin/sh", image) == "/bin/sh"
    add_image(mapping, "web:2", img_dir, entrypoint=[], cmd=["server"])
    assert images.resolve("web:2").cmd == ("server",)
    assert images.resolve("web:2").entrypoint == ()


def test_etcd_images_map_to_the_binaries_cache(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("ETCDOP_CACHE", str(tmp_path))
    d = tmp_path / "bin" / "etcd-v3.6.16"
    d.mkdir(parents=True)
    (d / "etcd").write_text("")
    images = ImageMap(tmp_path / "none.yaml")
    image = images.resolve("gcr.io/etcd-development/etcd:v3.6.16")
    assert image.path == (str(d),)
    assert image.cmd == ("etcd",)
    with pytest.raises(ImageNotFound):
        images.resolve("quay.io/coreos/etcd:v3.4.0")
