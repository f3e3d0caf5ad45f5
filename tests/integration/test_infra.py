"""The Go-built test infrastructure works: both etcd lines, helm, and the S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from e2e.localcluster.binaries import ETCD_VERSIONS, HELM_VERSION, bin_path
from e2e.localcluster.procs import Procs, free_port, wait_for
from e2e.localcluster.s3 import S3Endpoint


@pytest.mark.parametrize("version", ETCD_VERSIONS)
def test_etcd_line_starts_and_reports_its_version(version: str, tmp_path: Path) -> None:
    procs = Procs(tmp_path)
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    procs.start("etcd", [
        str(bin_path("etcd", version)), "--name=m0", f"--data-dir={tmp_path / 'data'}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=m0={peer}", "--unsafe-no-fsync",
    ])
    try:
        etcdctl = [str(bin_path("etcdctl", version)), f"--endpoints={client}", "--dial-timeout=2s"]

        def status() -> bool:
            out = subprocess.run([*etcdctl, "endpoint", "status", "-w", "json"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            return bool(json.loads(out)[0]["Status"]["version"] == version.lstrip("v"))

        wait_for(status, 30, f"etcd {version} to answer `etcdctl endpoint status`")
        out = subprocess.run([str(bin_path("etcdutl", version)), "version"],
                             capture_output=True, text=True, check=True).stdout
        assert version.lstrip("v") in out
    finally:
        procs.stop("etcd")
    assert not procs.alive("etcd")


def test_helm_prints_its_version() -> None:
    out = subprocess.run([str(bin_path("helm")), "version", "--short"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(HELM_VERSION)


def test_s3_multipart_roundtrip(s3_server: S3Endpoint) -> None:
    s3 = s3_server.client()
    bucket = "roundtrip-" + os.urandom(3).hex()
    s3.create_bucket(Bucket=bucket)
    part_size = 5 * 1024 * 1024  # S3's minimum for every part but the last
    parts_data = [os.urandom(part_size), os.urandom(part_size), os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="snap.db")
    etags = []
    for n, chunk in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=bucket, Key="snap.db", PartNumber=n,
                           UploadId=upload["UploadId"], Body=chunk)
        etags.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="snap.db", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": etags})
    body = s3.get_object(Bucket=bucket, Key="snap.db")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(b"".join(parts_data)).hexdigest()
    assert len(body) == 2 * part_size + 1234
