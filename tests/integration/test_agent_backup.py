"""The agent against real etcd (3.5 and 3.6) and a real S3 server (versitygw), over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from e2e.localcluster.binaries import ETCD_VERSIONS, bin_path
from e2e.localcluster.procs import Procs, free_port, wait_for
from etcdop.agent.api import Agent, AgentSettings, build_app
from etcdop.agent.backup import BackupPlan
from etcdop.agent.drill import DrillTools
from etcdop.etcd import EtcdClient
from etcdop.objectstore import MIB
from tests.etcdprocs import EtcdProcs
from tests.s3procs import S3Procs

pytestmark = pytest.mark.timeout(180)
TOKEN = "cluster-token-" + "x" * 20


@dataclass
class Setup:
    version: str
    etcd: EtcdProcs
    client: EtcdClient
    s3: S3Procs
    url: str
    agent: Agent
    creds_dir: Path

    def storage(self, bucket: str, **extra: Any) -> dict[str, Any]:
        return {"bucket": bucket, "endpoint": self.s3.url, "forcePathStyle": True,
                "prefix": "backups", **extra}

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
        async with httpx.AsyncClient(timeout=120) as http:
            return await http.post(self.url + path, json=body, headers=headers)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Procs]:
    with S3Procs(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module", params=ETCD_VERSIONS)
async def setup(
    request: pytest.FixtureRequest, s3: S3Procs, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Setup]:
    version: str = request.param
    base = tmp_path_factory.mktemp(f"agent-{version}")
    (base / "token").write_text(TOKEN)
    creds = s3.write_credentials(base / "s3")
    s3.write_credentials(base / "s3" / "wrong-creds", secret_key="not-the-secret")
    with EtcdProcs(base / "etcd", version, size=1) as etcd:
        endpoint = etcd.endpoints[0]
        settings = AgentSettings(
            etcd_endpoint=endpoint, token_file=base / "token", credentials_dir=creds,
            plan=BackupPlan("default", "demo", "demo-0", part_size=5 * MIB, parts_in_flight=2),
            drill=DrillTools(etcdutl=str(bin_path("etcdutl", version)),
                             etcd=str(bin_path("etcd", version)), scratch=base),
        )
        async with EtcdClient([endpoint]) as client:
            agent = Agent(settings, client)
            runner = web.AppRunner(build_app(agent), access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                yield Setup(version, etcd, client, s3, f"http://127.0.0.1:{port}", agent, creds)
            finally:
                await runner.cleanup()


async def write_keys(client: EtcdClient, prefix: str, n: int, size: int = 200) -> dict[str, bytes]:
    written = {}
    for i in range(n):
        key, value = f"{prefix}/{i:05d}", (f"{i}-" * size).encode()[:size]
        await client.put(key, value)
        written[key] = value
    return written


def restored_keys(version: str, db: Path, work: Path, prefix: str) -> dict[str, bytes]:
    """Restore DB with etcdutl, start etcd on it (loopback) and read every key under PREFIX."""
    peer, url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    subprocess.run(
        [str(bin_path("etcdutl", version)), "snapshot", "restore", str(db),
         f"--data-dir={work / 'data'}", "--name=r", f"--initial-cluster=r={peer}",
         f"--initial-advertise-peer-urls={peer}"],
        check=True, capture_output=True, timeout=120,
    )
    procs = Procs(work)
    procs.start("etcd", [str(bin_path("etcd", version)), "--name=r", f"--data-dir={work / 'data'}",
                         f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
                         f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                         f"--initial-cluster=r={peer}", "--unsafe-no-fsync"])
    try:
        etcdctl = [str(bin_path("etcdctl", version)), f"--endpoints={url}", "--dial-timeout=2s"]
        out: dict[str, Any] = {}

        def read() -> bool:
            res = subprocess.run([*etcdctl, "get", prefix, "--prefix", "-w", "json"],
                                 capture_output=True, check=True, timeout=20)
            out.update(json.loads(res.stdout))
            return True

        wait_for(read, 60, "etcd on the restored data to answer")
    finally:
        procs.stop("etcd")
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"])
            for kv in out.get("kvs", [])}


async def test_backup_is_stored_with_matching_metadata_and_restores_every_key(
    setup: Setup, tmp_path: Path
) -> None:
    written = await write_keys(setup.client, "/plain", 300)
    bucket = setup.s3.new_bucket()

    resp = await setup.post("/v1/backups", {"storage": setup.storage(bucket)})

    assert resp.status_code == 201, resp.text
    meta = resp.json()["backup"]
    s3 = setup.s3.client()
    body = s3.get_object(Bucket=bucket, Key=meta["snapshotKey"])["Body"].read()
    stored_meta = json.loads(s3.get_object(Bucket=bucket, Key=resp.json()["metadataKey"])["Body"]
                             .read())
    assert stored_meta == meta
    assert hashlib.sha256(body).hexdigest() == meta["sha256"]
    assert len(body) == meta["size"] == meta["snapshotSize"]
    assert hashlib.sha256(body[:-32]).hexdigest() == meta["snapshotSha256"]
    assert meta["snapshotKey"].startswith("backups/default/demo/")
    assert meta["snapshotKey"].endswith(f"-{meta['revision']:019d}/snapshot.db")
    assert meta["etcdVersion"] == setup.version.lstrip("v")
    assert meta["member"] == "demo-0" and meta["clusterId"] and meta["compression"] == ""
    assert meta["keyCount"] >= 300 and meta["revision"] <= meta["revisionMax"]
    db = tmp_path / "snapshot.db"
    db.write_bytes(body)
    assert restored_keys(setup.version, db, tmp_path, "/plain") == written
    assert setup.s3.uploads(bucket) == []


async def test_zstd_backup_passes_the_restore_drill(setup: Setup) -> None:
    await write_keys(setup.client, "/zstd", 200)
    bucket = setup.s3.new_bucket()

    resp = await setup.post("/v1/backups", {"storage": setup.storage(bucket),
                                            "compression": "zstd"})
    assert resp.status_code == 201, resp.text
    meta = resp.json()["backup"]
    assert meta["snapshotKey"].endswith("/snapshot.db.zst") and meta["compression"] == "zstd"
    assert meta["size"] < meta["snapshotSize"]
    stored = setup.s3.client().get_object(Bucket=bucket, Key=meta["snapshotKey"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == meta["sha256"]

    drill = await setup.post("/v1/verify", {"storage": setup.storage(bucket),
                                            "metadataKey": resp.json()["metadataKey"]})

    assert drill.status_code == 200, drill.text
    result = drill.json()
    assert result["verified"] is True, result
    assert meta["revision"] <= result["revision"] <= meta["revisionMax"]
    assert result["keyCount"] == meta["keyCount"]


async def test_drill_fails_an_object_altered_in_the_bucket(setup: Setup) -> None:
    await write_keys(setup.client, "/alter", 50)
    bucket = setup.s3.new_bucket()
    resp = await setup.post("/v1/backups", {"storage": setup.storage(bucket)})
    assert resp.status_code == 201, resp.text
    key = resp.json()["backup"]["snapshotKey"]
    s3 = setup.s3.client()
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    drill = await setup.post("/v1/verify", {"storage": setup.storage(bucket),
                                            "metadataKey": resp.json()["metadataKey"]})

    assert drill.status_code == 200, drill.text
    assert drill.json()["verified"] is False
    assert drill.json()["reason"] == "HashMismatch"
    assert "sha256" in drill.json()["message"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
], ids=["none", "wrong", "longer", "not-bearer"])
async def test_requests_without_the_token_are_refused_and_do_nothing(
    setup: Setup, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    bucket = setup.s3.new_bucket()
    refused_before = setup.agent.metrics.refused._value.get()
    caplog.set_level(logging.DEBUG)

    responses = [
        await setup.post("/v1/backups", {"storage": setup.storage(bucket)}, headers),
        await setup.post("/v1/verify", {"storage": setup.storage(bucket), "metadataKey": "x"},
                         headers),
    ]
    async with httpx.AsyncClient() as http:
        responses += [await http.get(setup.url + path, headers=headers)
                      for path in ("/healthz", "/metrics")]

    assert [r.status_code for r in responses] == [401] * 4
    assert responses[0].json()["error"]["reason"] == "Unauthorized"
    assert setup.s3.keys(bucket) == [] and setup.s3.uploads(bucket) == []
    assert setup.agent.metrics.refused._value.get() == refused_before + 4
    agent_logs = [r for r in caplog.records if r.name.startswith("etcdop")]
    assert [r.getMessage() for r in agent_logs] == ["request refused: missing or wrong token"] * 4


async def test_wrong_credentials_fail_with_the_cause_and_leave_nothing(setup: Setup) -> None:
    bucket = setup.s3.new_bucket()
    resp = await setup.post("/v1/backups", {
        "storage": setup.storage(bucket, credentialsSecret="wrong-creds")})

    assert resp.status_code == 502
    assert resp.json()["error"]["reason"] == "BadCredentials"
    assert "check the access key and secret key" in resp.json()["error"]["message"]
    assert setup.s3.keys(bucket) == [] and setup.s3.uploads(bucket) == []


async def test_missing_bucket_fails_with_the_cause(setup: Setup) -> None:
    resp = await setup.post("/v1/backups", {"storage": setup.storage("no-such-bucket")})

    assert resp.status_code == 502
    assert resp.json()["error"]["reason"] == "BucketMissing"
    assert "'no-such-bucket' does not exist" in resp.json()["error"]["message"]


async def test_bad_requests_are_named(setup: Setup) -> None:
    bucket = setup.s3.new_bucket()
    for body, words in [
        ({}, "storage must be an object"),
        ({"storage": setup.storage(bucket), "compression": "gzip"}, "compression 'gzip'"),
        ({"storage": setup.storage(bucket), "encryption": "ROT13"}, "encryption 'ROT13'"),
        ({"storage": setup.storage(bucket, credentialsSecret="../x")}, "not a Secret name"),
    ]:
        resp = await setup.post("/v1/backups", body)
        assert resp.status_code == 400, body
        assert words in resp.json()["error"]["message"]
    assert setup.s3.keys(bucket) == []


async def test_metrics_count_backups_and_failures(setup: Setup) -> None:
    bucket = setup.s3.new_bucket()
    assert (await setup.post("/v1/backups", {"storage": setup.storage(bucket)})).status_code == 201
    await setup.post("/v1/backups", {"storage": setup.storage("no-such-bucket")})

    async with httpx.AsyncClient() as http:
        text = (await http.get(setup.url + "/metrics",
                               headers={"Authorization": f"Bearer {TOKEN}"})).text

    assert 'etcdop_agent_backup_failures_total{cluster="demo",namespace="default",' \
           'reason="BucketMissing"}' in text
    assert "etcdop_agent_backup_last_success_timestamp_seconds{" in text
    assert "etcdop_agent_backup_duration_seconds_count{" in text
    size = [line for line in text.splitlines()
            if line.startswith("etcdop_agent_backup_size_bytes{")]
    assert size and float(size[0].rsplit(" ", 1)[1]) > 0


async def test_delete_removes_one_backup_of_its_own_cluster_only(setup: Setup) -> None:
    await write_keys(setup.client, "/delete", 20)
    bucket = setup.s3.new_bucket()
    first = await setup.post("/v1/backups", {"storage": setup.storage(bucket)})
    await write_keys(setup.client, "/delete-more", 1)  # a new revision: a second backup's key
    second = await setup.post("/v1/backups", {"storage": setup.storage(bucket)})
    assert first.status_code == second.status_code == 201
    keep = sorted(setup.s3.keys(bucket))
    foreign = first.json()["metadataKey"].replace("/default/demo/", "/default/other/")

    refused = await setup.post(
        "/v1/backups/delete", {"storage": setup.storage(bucket), "metadataKey": foreign}
    )
    deleted = await setup.post(
        "/v1/backups/delete",
        {"storage": setup.storage(bucket), "metadataKey": first.json()["metadataKey"]},
    )

    assert refused.status_code == 400 and "is not under" in refused.json()["error"]["message"]
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 2}
    first_dir = first.json()["metadataKey"].rsplit("/", 1)[0] + "/"
    assert sorted(setup.s3.keys(bucket)) == [k for k in keep if not k.startswith(first_dir)]
    assert len(setup.s3.keys(bucket)) == 2
