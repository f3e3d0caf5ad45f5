"""EtcdRestore end to end (real local cluster, real S3 server, real etcd): a three-member
cluster is backed up, written to again, and restored in place from the backup; a snapshot with
flipped bytes is refused before any member is stopped.

Member pods run this checkout's code (the restore init container and the agent), through the
image the `agent_image` fixture gives (e2e/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.s3 import S3Endpoint
from e2e.operator import (
    ETCD_VERSION,
    GROUP_VERSION,
    OperatorProcess,
    Operators,
    clusters_path,
    condition,
    create_cluster,
    delete_namespace,
    etcd_client,
    etcd_cluster,
    get_cluster,
    member_endpoints,
    member_pods,
    new_namespace,
    wait_cluster_ready,
    wait_lease_holder,
)
from e2e.test_etcdbackup import backups_path
from etcdop.operator.restorerequest import ANN_RESTORE, LABEL_RESTORE
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

SIZE = 3
READY_WITHIN = 300.0
BACKUP_WITHIN = 120.0
RESTORE_WITHIN = 420.0
CLUSTER = "db"


def restores_path(ns: str, name: str = "") -> str:
    path = f"/apis/{GROUP_VERSION}/namespaces/{ns}/etcdrestores"
    return f"{path}/{name}" if name else path


@dataclass
class Env:
    kube: KubeClient
    ns: str
    s3: Any
    endpoint: S3Endpoint
    bucket: str

    def storage(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "endpoint": self.endpoint.pod_url,
            "forcePathStyle": True,
            "region": self.endpoint.region,
            "credentialsSecret": "s3-creds",
        }

    async def wait(self, path: str, done: Any, what: str, within: float) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def check() -> bool:
            got = await self.kube.get(path)
            seen.clear()
            seen.update(got or {})
            return got is not None and bool(done(got.get("status") or {}))

        await eventually(check, within, what)
        return seen

    async def backup(self, name: str) -> dict[str, Any]:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "EtcdBackup",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"clusterName": CLUSTER, "storage": self.storage()},
        }
        await self.kube.create(backups_path(self.ns), body)
        got = await self.wait(
            backups_path(self.ns, name),
            lambda s: s.get("phase") in ("Succeeded", "Failed"),
            f"EtcdBackup {name} finished",
            BACKUP_WITHIN,
        )
        assert got["status"]["phase"] == "Succeeded", got["status"]
        return got

    async def restore(self, name: str, backup: str) -> None:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "EtcdRestore",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"clusterName": CLUSTER, "source": {"backupName": backup}},
        }
        await self.kube.create(restores_path(self.ns), body)


@pytest.fixture(scope="module")
async def operator(
    etcdcluster_crd: KubeClient,
    operators: Operators,
    lease_namespace: str,
    agent_image: str,
) -> OperatorProcess:
    op = operators.start(
        "op-etcdrestore",
        lease_namespace=lease_namespace,
        extra_args=[f"--agent-image={agent_image}"],
    )
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
    ns = await new_namespace(kube, "ec-restore")
    module_namespaces.append(ns)
    e = Env(kube, ns, s3_server.client(), s3_server, s3_server.new_bucket("e2e-restore"))
    await kube.create(f"/api/v1/namespaces/{ns}/secrets",
                      s3_server.credentials_secret("s3-creds"))
    await create_cluster(kube, etcd_cluster(CLUSTER, ns, SIZE, backup={"storage": e.storage()}))
    await wait_cluster_ready(kube, CLUSTER, ns, SIZE, READY_WITHIN)
    yield e
    await delete_namespace(kube, ns)


async def write(env: Env, prefix: str, n: int) -> set[str]:
    written = set()
    async with etcd_client(env.kube, CLUSTER, env.ns) as etcd:
        for i in range(n):
            key = f"{prefix}/{i:05d}"
            await etcd.put(key, f"value-{i}")
            written.add(key)
    return written


def keys_on(endpoint: str, consistency: str = "s") -> dict[str, str]:
    """Every key one member holds: by default a serializable read (that member's own data);
    "l" for a linearizable one (what the cluster has committed)."""
    etcdctl = [str(bin_path("etcdctl", f"v{ETCD_VERSION}")), f"--endpoints={endpoint}"]
    read = ["get", "", "--from-key", f"--consistency={consistency}", "-w", "json"]
    res = subprocess.run(
        [*etcdctl, "--dial-timeout=2s", *read],
        capture_output=True,
        check=True,
        timeout=30,
    )
    kvs = json.loads(res.stdout).get("kvs", [])
    return {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in kvs
    }


async def client_service(env: Env) -> dict[str, Any]:
    svc = await env.kube.get(f"/api/v1/namespaces/{env.ns}/services/{CLUSTER}-client")
    assert svc is not None
    return svc


async def test_a_snapshot_with_flipped_bytes_is_refused_before_any_member_is_stopped(
    env: Env,
) -> None:
    await write(env, "/flip", 20)
    got = await env.backup("to-flip")
    key = got["status"]["snapshotKey"]
    data = bytearray(env.s3.get_object(Bucket=env.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    env.s3.put_object(Bucket=env.bucket, Key=key, Body=bytes(data))
    before = {p["metadata"]["uid"] for p in await member_pods(env.kube, CLUSTER, env.ns)}

    await env.restore("from-flipped", "to-flip")
    refused = await env.wait(
        restores_path(env.ns, "from-flipped"),
        lambda s: s.get("phase") in ("Succeeded", "Failed"),
        "EtcdRestore from-flipped finished",
        BACKUP_WITHIN,
    )

    st = refused["status"]
    assert st["phase"] == "Failed" and st["reason"] == "HashMismatch", st
    assert key in st["message"] and "left untouched" in st["message"], st
    pods = await member_pods(env.kube, CLUSTER, env.ns)
    assert {p["metadata"]["uid"] for p in pods} == before
    assert not any(p["metadata"].get("deletionTimestamp") for p in pods)
    ec = await get_cluster(env.kube, CLUSTER, env.ns)
    assert ANN_RESTORE not in (ec["metadata"].get("annotations") or {})
    async with etcd_client(env.kube, CLUSTER, env.ns) as etcd:  # still serving writes
        await etcd.put("/flip/after-refusal", "yes")
        assert await etcd.get("/flip/after-refusal") == b"yes"
    await wait_cluster_ready(env.kube, CLUSTER, env.ns, SIZE, 30)


async def test_a_source_that_does_not_exist_is_refused_and_the_cluster_left_untouched(
    env: Env,
) -> None:
    before = {p["metadata"]["uid"] for p in await member_pods(env.kube, CLUSTER, env.ns)}
    key = f"{env.ns}/{CLUSTER}/no-such-backup/metadata.json"
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "EtcdRestore",
        "metadata": {"name": "from-nowhere", "namespace": env.ns},
        "spec": {"clusterName": CLUSTER, "source": {"storage": env.storage(), "key": key}},
    }
    await env.kube.create(restores_path(env.ns), body)
    refused = await env.wait(
        restores_path(env.ns, "from-nowhere"),
        lambda s: s.get("phase") in ("Succeeded", "Failed"),
        "EtcdRestore from-nowhere finished",
        BACKUP_WITHIN,
    )

    st = refused["status"]
    assert st["phase"] == "Failed" and st["reason"] == "ObjectMissing", st
    assert key in st["message"] and "left untouched" in st["message"], st
    pods = await member_pods(env.kube, CLUSTER, env.ns)
    assert {p["metadata"]["uid"] for p in pods} == before
    assert not any(p["metadata"].get("deletionTimestamp") for p in pods)
    await wait_cluster_ready(env.kube, CLUSTER, env.ns, SIZE, 30)


async def test_restore_in_place_brings_back_exactly_the_backups_keys_at_full_size(
    env: Env,
) -> None:
    await write(env, "/before", 100)
    endpoints = await member_endpoints(env.kube, CLUSTER, env.ns)
    backed_up = keys_on(sorted(endpoints.values())[0], "l")
    got = await env.backup("good")
    after = await write(env, "/after", 50)
    svc = await client_service(env)
    old_pods = {p["metadata"]["uid"] for p in await member_pods(env.kube, CLUSTER, env.ns)}

    await env.restore("in-place", "good")
    done = await env.wait(
        restores_path(env.ns, "in-place"),
        lambda s: s.get("phase") in ("Succeeded", "Failed"),
        "EtcdRestore in-place finished",
        RESTORE_WITHIN,
    )

    st = done["status"]
    assert st["phase"] == "Succeeded", st
    assert st["revision"] == got["status"]["revision"], (st, got["status"])
    assert st["snapshotKey"] == got["status"]["snapshotKey"]
    ec = await wait_cluster_ready(env.kube, CLUSTER, env.ns, SIZE, READY_WITHIN)
    assert ec["status"]["restore"]["phase"] == "Restored", ec["status"]
    assert ec["status"]["restore"]["revision"] == got["status"]["revision"]
    pods = await member_pods(env.kube, CLUSTER, env.ns)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == SIZE and not {p["metadata"]["uid"] for p in pods} & old_pods
    endpoints = await member_endpoints(env.kube, CLUSTER, env.ns)
    assert len(endpoints) == SIZE
    for name, url in sorted(endpoints.items()):
        held = keys_on(url)
        assert held == backed_up, f"member {name}: {len(held)} keys, want {len(backed_up)}"
        assert not after & set(held), f"member {name} holds keys written after the backup"
    assert len(backed_up) >= 120  # the /flip keys and the /before keys
    now = await client_service(env)
    assert now["metadata"]["uid"] == svc["metadata"]["uid"]
    assert now["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    events = await env.kube.items(f"/api/v1/namespaces/{env.ns}/events")
    reasons = [(e["involvedObject"]["kind"], e.get("reason")) for e in events]
    assert ("EtcdCluster", "Restored") in reasons, reasons
    assert ("EtcdRestore", "RestoreStarted") in reasons, reasons
    raw = await env.kube.get(clusters_path(env.ns, CLUSTER))
    assert raw is not None and raw["status"]["clusterID"] != ""


async def test_operator_sigkilled_during_a_restore_finishes_it_once(
    env: Env, operator: OperatorProcess, lease_namespace: str
) -> None:
    """Killed once while the old members stop, once while the seed restores, once while the
    cluster grows back: one seed ever, no old member left, exactly the backup's keys."""
    rng = random.Random(12)
    await write(env, "/kill", 30)
    endpoints = await member_endpoints(env.kube, CLUSTER, env.ns)
    backed_up = keys_on(sorted(endpoints.values())[0], "l")
    await env.backup("for-kill")
    after = await write(env, "/kill-after", 20)
    old_pods = {p["metadata"]["uid"] for p in await member_pods(env.kube, CLUSTER, env.ns)}
    seen: dict[str, dict[str, str]] = {}  # pod uid -> its labels, every pod ever seen

    async def watch_pods() -> None:
        while True:
            for p in await member_pods(env.kube, CLUSTER, env.ns):
                seen[p["metadata"]["uid"]] = dict(p["metadata"].get("labels") or {})
            await asyncio.sleep(0.05)  # a 20 Hz sample of the pods, not a sync

    async def world() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        ec = await get_cluster(env.kube, CLUSTER, env.ns)
        pods = await member_pods(env.kube, CLUSTER, env.ns)
        r = await env.kube.get(restores_path(env.ns, "under-kill")) or {}
        return ec, pods, r

    def seeds(pods: list[dict[str, Any]], uid: str) -> list[dict[str, Any]]:
        return [p for p in pods if p["metadata"].get("labels", {}).get(LABEL_RESTORE) == uid]

    def stopping(ec: dict[str, Any], pods: list[dict[str, Any]], r: dict[str, Any]) -> bool:
        uid = r.get("metadata", {}).get("uid", "")
        annotated = uid and uid in (ec["metadata"].get("annotations") or {}).get(ANN_RESTORE, "")
        return bool(annotated) and not seeds(pods, uid)

    def restoring(ec: dict[str, Any], pods: list[dict[str, Any]], r: dict[str, Any]) -> bool:
        uid = r.get("metadata", {}).get("uid", "")
        done = (ec.get("status") or {}).get("restore") or {}
        return bool(uid and seeds(pods, uid)) and not (
            done.get("uid") == uid and done.get("phase") == "Restored"
        )

    def growing(ec: dict[str, Any], pods: list[dict[str, Any]], r: dict[str, Any]) -> bool:
        uid = r.get("metadata", {}).get("uid", "")
        st = ec.get("status") or {}
        done = st.get("restore") or {}
        restored = done.get("uid") == uid and done.get("phase") == "Restored"
        return restored and len([p for p in pods if p["metadata"]["uid"] not in old_pods]) > 1

    kills: list[str] = []
    watcher = asyncio.create_task(watch_pods())
    try:
        await env.restore("under-kill", "for-kill")
        for stage, cond in (("stopping", stopping), ("restoring", restoring), ("growing", growing)):

            async def holds(cond: Any = cond) -> bool:
                return bool(cond(*await world()))

            await eventually(holds, RESTORE_WITHIN, f"restore stage {stage}", every=0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.2))  # WHEN to kill, not a sync
            operator.kill()
            if await holds():  # the operator is dead: the stage cannot have moved on since
                kills.append(stage)
            operator.start()  # same identity: it may take its own lease back at once
            await operator.wait_serving()
        await wait_lease_holder(env.kube, lease_namespace, operator.identity, 60)
        done = await env.wait(
            restores_path(env.ns, "under-kill"),
            lambda s: s.get("phase") in ("Succeeded", "Failed"),
            "EtcdRestore under-kill finished",
            RESTORE_WITHIN,
        )
        await wait_cluster_ready(env.kube, CLUSTER, env.ns, SIZE, READY_WITHIN)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if not operator.alive:
            operator.start()

    assert done["status"]["phase"] == "Succeeded", done["status"]
    # Each stage is a state only the operator moves on from, so a kill seen in it landed in it.
    assert kills == ["stopping", "restoring", "growing"], f"kills inside their stage: {kills}"
    uid = done["metadata"]["uid"]
    ever_seeds = [u for u, labels in seen.items() if labels.get(LABEL_RESTORE) == uid]
    assert len(ever_seeds) == 1, f"seeds ever made: {ever_seeds} (kills: {kills})"
    pods = await member_pods(env.kube, CLUSTER, env.ns)
    assert not {p["metadata"]["uid"] for p in pods} & old_pods
    endpoints = await member_endpoints(env.kube, CLUSTER, env.ns)
    assert len(endpoints) == SIZE
    for name, url in sorted(endpoints.items()):
        held = keys_on(url)
        assert held == backed_up, f"member {name}: {len(held)} keys, want {len(backed_up)}"
        assert not after & set(held)


QUORUM_LOSS_TIMEOUT = "20s"
QUORUM_LOST_WITHIN = 120.0


async def lose_quorum(env: Env, cluster: str) -> tuple[set[str], dict[str, Any]]:
    """A three-member cluster with a verified backup and keys written after it, then two of
    its pods deleted at once (grace period 0): the keys of the backup and the surviving pod."""
    await create_cluster(
        env.kube,
        etcd_cluster(
            cluster,
            env.ns,
            SIZE,
            backup={"storage": env.storage()},
            recovery={
                "quorumLossTimeout": QUORUM_LOSS_TIMEOUT,
                "autoRestore": cluster.startswith("auto"),
            },
        ),
    )
    await wait_cluster_ready(env.kube, cluster, env.ns, SIZE, READY_WITHIN)
    async with etcd_client(env.kube, cluster, env.ns) as etcd:
        for i in range(40):
            await etcd.put(f"/q/{i:05d}", f"value-{i}")
    endpoints = await member_endpoints(env.kube, cluster, env.ns)
    backed_up = set(keys_on(sorted(endpoints.values())[0], "l"))
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "EtcdBackup",
        "metadata": {"name": f"{cluster}-verified", "namespace": env.ns},
        "spec": {"clusterName": cluster, "storage": env.storage(), "verify": True},
    }
    await env.kube.create(backups_path(env.ns), body)
    got = await env.wait(
        backups_path(env.ns, f"{cluster}-verified"),
        lambda s: s.get("verified") is not None,
        "the backup's restore drill ran",
        BACKUP_WITHIN * 2,
    )
    assert got["status"]["verified"] is True, got["status"]
    async with etcd_client(env.kube, cluster, env.ns) as etcd:
        for i in range(20):
            await etcd.put(f"/q-after/{i:05d}", "lost with the quorum")
    pods = await member_pods(env.kube, cluster, env.ns)
    force = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    for p in pods[:2]:
        await env.kube.request(
            "DELETE", f"/api/v1/namespaces/{env.ns}/pods/{p['metadata']['name']}", force
        )
    return backed_up, pods[2]


async def wait_quorum_lost(env: Env, cluster: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def lost() -> bool:
        ec = await get_cluster(env.kube, cluster, env.ns)
        seen.update(ec)
        c = condition(ec, "QuorumLost") or {}
        return c.get("status") == "True"

    await eventually(lost, QUORUM_LOST_WITHIN, f"QuorumLost on {cluster}")
    return seen


async def restores_of(env: Env, cluster: str) -> list[dict[str, Any]]:
    items = await env.kube.items(restores_path(env.ns))
    return [r for r in items if r["spec"]["clusterName"] == cluster]


async def assert_restored(env: Env, cluster: str, backed_up: set[str], name: str) -> None:
    done = await env.wait(
        restores_path(env.ns, name),
        lambda s: s.get("phase") in ("Succeeded", "Failed"),
        f"EtcdRestore {name} finished",
        RESTORE_WITHIN,
    )
    assert done["status"]["phase"] == "Succeeded", done["status"]
    await wait_cluster_ready(env.kube, cluster, env.ns, SIZE, READY_WITHIN)
    endpoints = await member_endpoints(env.kube, cluster, env.ns)
    assert len(endpoints) == SIZE
    for member, url in sorted(endpoints.items()):
        held = set(keys_on(url))
        assert held == backed_up, f"member {member}: {len(held)} keys, want {len(backed_up)}"


async def test_with_auto_restore_a_cluster_that_lost_its_quorum_comes_back_from_the_backup(
    env: Env,
) -> None:
    backed_up, survivor = await lose_quorum(env, "auto")

    ec = await wait_quorum_lost(env, "auto")
    lost = condition(ec, "QuorumLost") or {}
    assert "autoRestore is true" in lost.get("message", ""), lost

    async def made() -> bool:
        return bool(await restores_of(env, "auto"))

    await eventually(made, 60, "the operator's EtcdRestore of cluster auto")
    (auto,) = await restores_of(env, "auto")
    assert auto["spec"]["source"]["backupName"] == "auto-verified"
    assert auto["metadata"]["labels"]["etcdop.io/auto-restore"] == "true"
    await assert_restored(env, "auto", backed_up, auto["metadata"]["name"])
    assert len(await restores_of(env, "auto")) == 1
    events = await env.kube.items(f"/api/v1/namespaces/{env.ns}/events")

    def said(reason: str) -> list[str]:
        return [e.get("note") or e.get("message") or "" for e in events if e["reason"] == reason]

    assert said("AutoRestore") and "auto-verified" in said("AutoRestore")[0], said("AutoRestore")
    # the survivor's data was backed up before it was replaced
    (final,) = said("FinalBackup")
    assert survivor["metadata"]["name"] in final, final
    key = final.split(", ")[-1].split(" ")[0]
    meta = json.loads(env.s3.get_object(Bucket=env.bucket, Key=key)["Body"].read())
    assert meta["member"] == survivor["metadata"]["name"]
    assert meta["keyCount"] >= len(backed_up), meta


async def test_without_auto_restore_quorum_lost_deletes_nothing_and_an_etcdrestore_recovers(
    env: Env,
) -> None:
    backed_up, survivor = await lose_quorum(env, "manual")

    ec = await wait_quorum_lost(env, "manual")
    lost = condition(ec, "QuorumLost") or {}
    assert "create an EtcdRestore" in lost.get("message", ""), lost
    pods = await member_pods(env.kube, "manual", env.ns)
    assert [p["metadata"]["uid"] for p in pods] == [survivor["metadata"]["uid"]]
    assert not pods[0]["metadata"].get("deletionTimestamp")
    assert await restores_of(env, "manual") == []

    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "EtcdRestore",
        "metadata": {"name": "manual-back", "namespace": env.ns},
        "spec": {"clusterName": "manual", "source": {"backupName": "manual-verified"}},
    }
    await env.kube.create(restores_path(env.ns), body)
    await assert_restored(env, "manual", backed_up, "manual-back")


async def test_a_clone_serves_the_backups_keys_and_leaves_the_original_untouched(
    env: Env,
) -> None:
    await write(env, "/clone", 25)
    endpoints = await member_endpoints(env.kube, CLUSTER, env.ns)
    backed_up = keys_on(sorted(endpoints.values())[0], "l")
    await env.backup("for-clone")
    after = await write(env, "/clone-after", 10)
    original = {p["metadata"]["uid"] for p in await member_pods(env.kube, CLUSTER, env.ns)}
    original_id = (await get_cluster(env.kube, CLUSTER, env.ns))["status"]["clusterID"]

    await create_cluster(
        env.kube,
        etcd_cluster(
            "copy",
            env.ns,
            SIZE,
            backup={"storage": env.storage()},
            bootstrap={"backupName": "for-clone"},
        ),
    )
    copy = await wait_cluster_ready(env.kube, "copy", env.ns, SIZE, READY_WITHIN)

    assert copy["status"]["clusterID"] != original_id
    for member, url in sorted((await member_endpoints(env.kube, "copy", env.ns)).items()):
        held = keys_on(url)
        assert held == backed_up, f"clone member {member}: {len(held)} keys, want {len(backed_up)}"
    pods = await member_pods(env.kube, CLUSTER, env.ns)
    assert {p["metadata"]["uid"] for p in pods} == original
    for member, url in sorted((await member_endpoints(env.kube, CLUSTER, env.ns)).items()):
        assert set(keys_on(url)) == set(backed_up) | after, f"original member {member}"
    ec = await get_cluster(env.kube, CLUSTER, env.ns)
    assert ec["status"]["clusterID"] == original_id
