"""The CRD in crds/ is what the Python types generate, and is a schema the API server accepts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from etcdop.api import crdgen
from etcdop.api.etcdcluster import (
    IMAGE_RULE,
    QUANTITY_RULE,
    SIZE_RULE,
    VERSION_FORMAT_RULE,
    VERSION_SUPPORTED_RULE,
    VERSION_TRANSITION_RULES,
)

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "etcdclusters.etcdop.io.yaml"


def version_schema() -> dict[str, Any]:
    crd = crdgen.etcdcluster_crd()
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_the_committed_crd_matches_the_types() -> None:
    assert CRD_FILE.read_text() == crdgen.manifests()[CRD_FILE.name], (
        "crds/ drifted from src/etcdop/api: run `python -m etcdop.api.crdgen`"
    )
    assert crdgen.main(["--check"]) == 0


def test_check_fails_on_drift_and_write_fixes_it(tmp_path: Path) -> None:
    (tmp_path / CRD_FILE.name).write_text("stale\n")
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 1
    assert (tmp_path / CRD_FILE.name).read_text() == "stale\n", "--check must not write"
    assert crdgen.main(["--dir", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 0


def test_the_file_is_one_valid_yaml_document() -> None:
    docs = list(yaml.safe_load_all(CRD_FILE.read_text()))
    assert len(docs) == 1
    crd = docs[0]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "etcdclusters.etcdop.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "EtcdCluster", "etcdclusters", ["etcd"]
    )


def test_the_schema_is_structural() -> None:
    """Every node has a type; unknown fields are kept only where Pod types pass through."""
    passthrough = []
    for path, node in walk(version_schema()):
        assert "type" in node, f"{path or '<root>'} has no type"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            passthrough.append(path)
    assert sorted(passthrough) == [
        "spec.podTemplate.affinity",
        "spec.podTemplate.tolerations[]",
        "spec.resources",
    ]


def test_every_field_a_user_writes_is_described() -> None:
    schema = version_schema()
    for path, node in walk(schema["properties"]["spec"], "spec"):
        if path.endswith(("[]", "{}")):
            continue
        assert node.get("description"), f"{path} has no description for kubectl explain"
    for path, node in walk(schema["properties"]["status"], "status"):
        if not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"


def rules_at(path: str) -> list[dict[str, str]]:
    node = dict(walk(version_schema()))[path]
    rules: list[dict[str, str]] = node.get("x-kubernetes-validations", [])
    return rules


def test_admission_rules_reject_bad_input_with_the_python_messages() -> None:
    assert rules_at("spec.size") == [{"rule": SIZE_RULE.cel, "message": SIZE_RULE.message}]
    assert [r["message"] for r in rules_at("spec.version")] == [
        VERSION_FORMAT_RULE.message,
        VERSION_SUPPORTED_RULE.message,
        *(r.message for r in VERSION_TRANSITION_RULES),
    ]
    assert all("oldSelf" in r["rule"] for r in rules_at("spec.version")[2:])
    assert "InPlace" in rules_at("spec")[0]["message"]
    assert rules_at("spec.storage.persistentVolumeClaim.size")[0]["rule"] == QUANTITY_RULE.cel
    assert rules_at("spec.storage.emptyDir.sizeLimit")[0]["rule"] == QUANTITY_RULE.cel
    assert rules_at("spec.image")[0]["message"] == IMAGE_RULE.message
    assert "at most one" in rules_at("spec.storage")[0]["message"]


def test_strings_with_rules_are_bounded() -> None:
    """The API server estimates CEL cost from maxLength; unbounded strings can be refused."""
    for path, node in walk(version_schema()):
        if node.get("type") == "string" and node.get("x-kubernetes-validations"):
            assert node.get("maxLength"), f"{path} has CEL rules but no maxLength"


def test_defaults_and_required() -> None:
    spec = version_schema()["properties"]["spec"]
    assert spec["properties"]["size"]["default"] == 3
    assert spec["properties"]["paused"]["default"] is False
    assert spec["required"] == ["version"]
    assert version_schema()["required"] == ["spec"]


def test_status_and_scale_subresources_and_columns() -> None:
    v = crdgen.etcdcluster_crd()["spec"]["versions"][0]
    assert v["subresources"]["status"] == {}
    assert v["subresources"]["scale"]["specReplicasPath"] == ".spec.size"
    cols = [(c["name"].upper(), c["jsonPath"]) for c in v["additionalPrinterColumns"]]
    assert cols == [
        ("SIZE", ".spec.size"),
        ("READY", ".status.readyMembers"),
        ("VERSION", ".status.currentVersion"),
        ("PHASE", ".status.phase"),
        ("AGE", ".metadata.creationTimestamp"),
    ]


def test_list_map_keys_are_required_fields() -> None:
    """The API server refuses a map-list whose key may be missing."""
    for path, node in walk(version_schema()):
        for key in node.get("x-kubernetes-list-map-keys", []):
            assert key in node["items"].get("required", []), f"{path}: key {key} not required"
