"""Agent pieces without I/O: metadata JSON, the token check, credentials from files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from etcdop.agent.auth import TokenCheck
from etcdop.agent.metadata import BackupMetadata
from etcdop.objectstore import Credentials, StoreConfig

META = BackupMetadata(
    namespace="ns", cluster="demo", cluster_id="abc", member="demo-0", member_id="12",
    etcd_version="3.6.16", revision=10, revision_max=11, key_count=5, snapshot_key="k",
    size=100, sha256="00", snapshot_size=4128, snapshot_sha256="11", compression="zstd",
    encryption="SSE-C", sse_customer_key_md5="md5", started_at="t0", completed_at="t1",
)


def test_metadata_roundtrip_in_camel_case() -> None:
    doc = META.to_json()
    assert {"clusterId", "etcdVersion", "revisionMax", "keyCount", "snapshotSha256",
            "sseCustomerKeyMd5", "startedAt", "completedAt"} <= set(doc)
    assert BackupMetadata.from_json(doc) == META


def test_metadata_missing_fields_are_named() -> None:
    doc = META.to_json()
    del doc["keyCount"], doc["sha256"]
    with pytest.raises(ValueError, match="keyCount, sha256"):
        BackupMetadata.from_json(doc)


def test_token_check(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    check = TokenCheck(token)
    assert check.allows("Bearer s3cret")
    assert check.allows("bearer s3cret")
    assert not check.allows(None)
    assert not check.allows("")
    assert not check.allows("Bearer wrong")
    assert not check.allows("Basic s3cret")
    assert not check.allows("Bearer s3cre")
    token.write_text("rotated")
    assert check.allows("Bearer rotated")  # re-read: a rotated Secret applies at once


def test_an_empty_or_missing_token_file_refuses_everything(tmp_path: Path) -> None:
    assert not TokenCheck(tmp_path / "absent").allows("Bearer ")
    (tmp_path / "empty").write_text("")
    assert not TokenCheck(tmp_path / "empty").allows("Bearer ")


def test_credentials_from_a_mounted_secret(tmp_path: Path) -> None:
    folder = tmp_path / "backup-creds"
    folder.mkdir()
    (folder / "accessKeyId").write_text("AK\n")
    (folder / "secretAccessKey").write_text("SK")
    key = bytes(range(32))
    (folder / "sseCustomerKey").write_text(base64.b64encode(key).decode())

    creds = Credentials.from_dir(tmp_path, "backup-creds")

    assert (creds.access_key, creds.secret_key, creds.sse_customer_key) == ("AK", "SK", key)
    assert "SK" not in repr(creds) and "AK" not in repr(creds)
    config = StoreConfig("b", creds, encryption="SSE-C")
    assert config.sse_params()["SSECustomerKey"] == key
    assert config.sse_c_key_md5 and "SK" not in repr(config)


def test_credentials_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="accessKeyId is missing"):
        Credentials.from_dir(tmp_path)
    with pytest.raises(ValueError, match="not a Secret name"):
        Credentials.from_dir(tmp_path, "../etc")
    with pytest.raises(ValueError, match="SSE-C needs the key file"):
        StoreConfig("b", Credentials("a", "s"), encryption="SSE-C")
    with pytest.raises(ValueError, match="bucket is empty"):
        StoreConfig("", Credentials("a", "s"))
