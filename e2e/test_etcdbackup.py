"""EtcdBackup end to end: the operator asks a member pod's agent (a native sidecar) to stream a
snapshot to the real S3 server (versitygw), records it in status, verifies it with a restore
drill, and keeps a schedule with retention. Two one-member clusters: `good` mounts working
credentials, `bad` mounts a Secret with a wrong secret key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.s3 import S3Endpoint
from e2e.operator import (
    ETCD_VERSION,
    GROUP_VERSION,
    OperatorProcess,
    Operators,
    condition,
    create_cluster,
    delete_namespace,
    etcd_client,
    etcd_cluster,
    get_cluster,
    member_ids,
    member_pods,
    new_namespace,
    patch_spec,
    wait_cluster_ready,
    wait_lease_holder,
)
from etcdop.operator.sidecar import AGENT_PORT
from tests.integration.test_agent_backup import restored_keys
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

READY_WITHIN = 240.0
BACKUP_WITHIN = 120.0
SCHEDULE_WITHIN = 330.0  # three schedule times of a once-a-minute schedule, and the last drill


def backups_path(ns: str, name: str = "") -> str:
    path = f"/apis/{GROUP_VERSION}/namespaces/{ns}/etcdbackups"
    return f"{path}/{name}" if name else path


@dataclass
class Env:
    kube: KubeClient
    ns: str
    s3: Any  # boto3 client on the host
    endpoint: S3Endpoint
    bucket: str

    def storage(self, secret: str = "s3-creds", **extra: Any) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "endpoint": self.endpoint.pod_url,
            "forcePathStyle": True,
            "region": self.endpoint.region,
            "credentialsSecret": secret,
            **extra,
        }

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    async def backup(self, name: str, cluster: str = "good", **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "EtcdBackup",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"clusterName": cluster, "storage": self.storage(), **spec},
        }
        return await self.kube.create(backups_path(self.ns), body)

    async def wait_backup(
        self, name: str, done: Any, what: str, within: float = BACKUP_WITHIN
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def check() -> bool:
            got = await self.kube.get(backups_path(self.ns, name))
            seen.clear()
            seen.update(got or {})
            status = (got or {}).get("status") or {}
            assert got is not None and done(status), f"status: {status}"  # named on a timeout
            return True

        await eventually(check, within, f"EtcdBackup {name}: {what}")
        return seen


@pytest.fixture(scope="module")
async def operator(
    etcdcluster_crd: KubeClient,
    operators: Operators,
    lease_namespace: str,
    agent_image: str,
) -> OperatorProcess:
    """The module's operator, making member pods whose agent runs this checkout's code."""
    op = operators.start("op-etcdbackup", lease_namespace=lease_namespace,
                         extra_args=[f"--agent-image={agent_image}"])
    await op.wait_serving()
    await wait_lease_holder(etcdcluster_crd, lease_namespace, op.identity, within=60)
    return op


@pytest.fixture(scope="module")
async def env(
    etcdcluster_crd: KubeClient,
    local_node: object,
    s3_server: S3Endpoint,
    operator: OperatorProcess,
    module_namespaces: list[str],
) -> AsyncIterator[Env]:
    kube = etcdcluster_crd
    ns = await new_namespace(kube, "ec-backup")
    module_namespaces.append(ns)
    e = Env(kube, ns, s3_server.client(), s3_server, s3_server.new_bucket("e2e-backup"))
    await kube.create(f"/api/v1/namespaces/{ns}/secrets",
                      s3_server.credentials_secret("s3-creds"))
    await kube.create(f"/api/v1/namespaces/{ns}/secrets",
                      s3_server.credentials_secret("bad-creds", "not-the-secret-key"))
    await create_cluster(kube, etcd_cluster("good", ns, 1, backup={"storage": e.storage()}))
    await create_cluster(
        kube, etcd_cluster("bad", ns, 1, backup={"storage": e.storage("bad-creds")})
    )
    await wait_cluster_ready(kube, "good", ns, 1, READY_WITHIN)
    await wait_cluster_ready(kube, "bad", ns, 1, READY_WITHIN)
    yield e
    await delete_namespace(kube, ns)


async def write(kube: KubeClient, ns: str, prefix: str, n: int) -> dict[str, bytes]:
    written = {}
    async with etcd_client(kube, "good", ns) as etcd:
        for i in range(n):
            key, value = f"{prefix}/{i:05d}", f"value-{i}".encode()
            await etcd.put(key, value)
            written[key] = value
    return written


async def test_member_pods_run_the_agent_as_a_native_sidecar_without_api_credentials(
    env: Env, agent_image: str,
) -> None:
    pod = (await member_pods(env.kube, "good", env.ns))[0]
    sidecars = pod["spec"]["initContainers"]
    assert [(c["name"], c["restartPolicy"]) for c in sidecars] == [("backup-agent", "Always")]
    assert sidecars[0]["image"] == agent_image
    assert pod["spec"]["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in sidecars[0]["volumeMounts"]}
    assert {"/etc/etcdop/token", "/etc/etcdop/s3/s3-creds"} <= mounts
    statuses = pod["status"].get("initContainerStatuses") or []
    assert [s["name"] for s in statuses if s.get("started")] == ["backup-agent"]


async def test_a_backup_completes_matches_its_checksum_and_restores_every_key(
    env: Env, tmp_path: Path
) -> None:
    written = await write(env.kube, env.ns, "/before", 200)

    await env.backup("first")
    got = await env.wait_backup(
        "first", lambda s: s.get("phase") in ("Succeeded", "Failed"), "finished"
    )

    st = got["status"]
    assert st["phase"] == "Succeeded", st
    body = env.s3.get_object(Bucket=env.bucket, Key=st["snapshotKey"])["Body"].read()
    meta = json.loads(env.s3.get_object(Bucket=env.bucket, Key=st["metadataKey"])["Body"].read())
    assert hashlib.sha256(body).hexdigest() == st["sha256"] == meta["sha256"]
    assert len(body) == st["size"] == meta["size"]
    assert st["revision"] == meta["revision"] and st["member"] == meta["member"]
    assert st["etcdVersion"] == ETCD_VERSION and st["startTime"] and st["completionTime"]
    assert (condition(got, "Complete") or {}).get("status") == "True", got.get("status")
    db = tmp_path / "snapshot.db"
    db.write_bytes(body)
    assert restored_keys(f"v{ETCD_VERSION}", db, tmp_path, "/before") == written


async def test_the_drill_verifies_a_good_backup_and_fails_an_altered_one(env: Env) -> None:
    await write(env.kube, env.ns, "/drill", 50)
    await env.backup("verified", verify=True)
    await env.backup("altered")  # verify off until the object is altered
    good = await env.wait_backup(
        "verified", lambda s: s.get("verified") is not None, "drill ran", within=BACKUP_WITHIN * 2
    )
    bad = await env.wait_backup("altered", lambda s: s.get("phase") == "Succeeded", "succeeded")
    key = bad["status"]["snapshotKey"]
    data = bytearray(env.s3.get_object(Bucket=env.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    env.s3.put_object(Bucket=env.bucket, Key=key, Body=bytes(data))

    await env.kube.merge_patch(backups_path(env.ns, "altered"), {"spec": {"verify": True}})
    bad = await env.wait_backup("altered", lambda s: s.get("verified") is not None, "drill ran")

    assert good["status"]["verified"] is True and good["status"]["verifiedAt"]
    assert (condition(good, "Verified") or {}).get("reason") == "DrillPassed", good.get("status")
    assert bad["status"]["verified"] is False and bad["status"]["phase"] == "Succeeded"
    verdict = condition(bad, "Verified")
    assert verdict is not None and verdict["status"] == "False", verdict
    assert verdict["reason"] == "HashMismatch" and key in verdict["message"], verdict


async def test_wrong_credentials_and_a_missing_bucket_fail_with_a_readable_reason(
    env: Env,
) -> None:
    before = env.keys()
    await env.backup("wrong-creds", cluster="bad", storage=env.storage("bad-creds"))
    await env.backup("no-bucket", storage=env.storage(bucket="no-such-bucket-here"))

    creds = await env.wait_backup("wrong-creds", lambda s: s.get("phase") == "Failed", "Failed")
    missing = await env.wait_backup("no-bucket", lambda s: s.get("phase") == "Failed", "Failed")

    assert creds["status"]["reason"] == "BadCredentials", creds["status"]
    assert "check the access key and secret key" in creds["status"]["message"]
    assert missing["status"]["reason"] == "BucketMissing", missing["status"]
    assert "'no-such-bucket-here' does not exist" in missing["status"]["message"]
    assert "not-the-secret-key" not in json.dumps([creds, missing])
    assert env.keys() == before
    assert env.s3.list_multipart_uploads(Bucket=env.bucket).get("Uploads", []) == []


async def test_the_agent_refuses_calls_without_the_token_and_does_nothing(env: Env) -> None:
    pod = (await member_pods(env.kube, "good", env.ns))[0]
    url = f"http://{pod['status']['podIP']}:{AGENT_PORT}/v1/backups"
    body = {"storage": env.storage()}
    before = env.keys()

    async with httpx.AsyncClient(timeout=30) as http:
        without = await http.post(url, json=body)
        wrong = await http.post(url, json=body, headers={"Authorization": "Bearer not-it"})

    assert (without.status_code, wrong.status_code) == (401, 401)
    assert env.keys() == before


async def test_a_schedule_every_minute_with_keep_last_2_keeps_two_verified_backups(
    env: Env,
) -> None:
    prefix = "scheduled"
    await patch_spec(
        env.kube,
        "good",
        env.ns,
        {
            "backup": {
                "storage": env.storage(prefix=prefix),
                "schedule": "* * * * *",
                "retention": {"keepLast": 2},
            }
        },
    )
    created: set[str] = set()
    state: dict[str, Any] = {}

    async def two_kept_after_a_prune() -> bool:
        items = await env.kube.items(backups_path(env.ns), "etcdop.io/scheduled=true")
        live = [b for b in items if not b["metadata"].get("deletionTimestamp")]
        created.update(b["metadata"]["name"] for b in live)
        kept = {b["metadata"]["name"]: b["status"] for b in live if b.get("status")}
        ec = await get_cluster(env.kube, "good", env.ns)
        state.update(kept=kept, items=items, ready=condition(ec, "BackupReady"))
        return (
            len(created) >= 3
            and len(items) == 2
            and len(kept) == 2
            and all(s.get("verified") is True for s in kept.values())
            and (state["ready"] or {}).get("status") == "True"
        )

    try:
        await eventually(
            two_kept_after_a_prune,
            SCHEDULE_WITHIN,
            "three scheduled backups made, two kept, both verified",
        )
    finally:
        await patch_spec(env.kube, "good", env.ns, {"backup": {"schedule": None}})

    kept = state["kept"]
    dirs = sorted({k.rsplit("/", 1)[0] for k in env.keys(prefix + "/")})
    assert dirs == sorted(s["metadataKey"].rsplit("/", 1)[0] for s in kept.values())
    assert len(dirs) == 2 and len(env.keys(prefix + "/")) == 4
    owners = {r["kind"] for b in state["items"] for r in b["metadata"]["ownerReferences"]}
    assert owners == {"EtcdCluster"}
    assert state["ready"]["reason"] == "BackupSucceeded"


async def test_members_with_the_agent_pass_restricted_pod_security(env: Env) -> None:
    kube = env.kube
    ns = await new_namespace(kube, "ec-bak-restricted")
    try:
        await kube.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"}}})
        await kube.create(f"/api/v1/namespaces/{ns}/secrets",
                          env.endpoint.credentials_secret("s3-creds"))
        await create_cluster(kube, etcd_cluster("strict", ns, 1, backup={"storage": env.storage()}))
        await wait_cluster_ready(kube, "strict", ns, 1, READY_WITHIN)
        pod = (await member_pods(kube, "strict", ns))[0]
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["backup-agent"]
    finally:
        await kube.delete(f"/api/v1/namespaces/{ns}")


OLD_VERSION = "3.5.35"


async def test_an_upgrade_takes_a_backup_first_and_a_failed_backup_holds_it(env: Env) -> None:
    kube, ns = env.kube, env.ns
    good = {"backup": {"storage": env.storage(prefix="before-upgrade")}}
    bad = {"backup": {"storage": env.storage("bad-creds")}}
    await create_cluster(kube, etcd_cluster("upg", ns, 1, version=OLD_VERSION, **good))
    await create_cluster(kube, etcd_cluster("upgbad", ns, 1, version=OLD_VERSION, **bad))
    await wait_cluster_ready(kube, "upg", ns, 1, READY_WITHIN)
    await wait_cluster_ready(kube, "upgbad", ns, 1, READY_WITHIN)
    bad_ids = await member_ids(kube, "upgbad", ns)
    await patch_spec(kube, "upg", ns, {"version": ETCD_VERSION})
    await patch_spec(kube, "upgbad", ns, {"version": ETCD_VERSION})

    generation = (await get_cluster(kube, "upg", ns))["metadata"]["generation"]
    name = f"upg-before-{ETCD_VERSION.replace('.', '-')}-g{generation}"
    taken = await env.wait_backup(
        name, lambda st: st.get("phase") == "Succeeded", "the pre-upgrade backup succeeded"
    )
    assert taken["metadata"]["labels"]["etcdop.io/before-upgrade"] == ETCD_VERSION
    assert taken["spec"]["deletionPolicy"] == "Retain"
    assert taken["status"]["etcdVersion"] == OLD_VERSION, taken["status"]

    async def upgraded() -> bool:
        ec = await get_cluster(kube, "upg", ns)
        versions = {m["name"]: m.get("version") for m in ec["status"].get("members") or []}
        assert set(versions.values()) == {ETCD_VERSION}, versions
        return True

    await eventually(upgraded, READY_WITHIN, "cluster upg upgraded")
    pods = await member_pods(kube, "upg", ns)
    newest = max(p["metadata"]["creationTimestamp"] for p in pods)
    done = taken["status"]["completionTime"]
    assert done <= newest, f"the backup finished at {done}, after a new member's pod ({newest})"

    seen: dict[str, Any] = {}

    async def held() -> bool:
        ec = await get_cluster(kube, "upgbad", ns)
        seen.update(condition(ec, "Degraded") or {})
        assert seen.get("reason") == "UpgradeBackupFailed", seen
        return True

    await eventually(held, BACKUP_WITHIN, "Degraded/UpgradeBackupFailed on upgbad")
    assert "upgbad-before-" in seen["message"] and "backupBeforeUpgrade" in seen["message"]
    assert await member_ids(kube, "upgbad", ns) == bad_ids, "a member changed"
    ec = await get_cluster(kube, "upgbad", ns)
    assert {m.get("version") for m in ec["status"]["members"]} == {OLD_VERSION}
