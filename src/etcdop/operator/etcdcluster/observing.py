"""Observing: the I/O that builds the planner's snapshot (`model.Observed`) of one EtcdCluster,
from the caches and from each member's own answers. The pure translation is operator/observe.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from etcdop.api import EtcdCluster
from etcdop.etcd import EtcdClient, EtcdError
from etcdop.etcd import Member as EtcdMember
from etcdop.kube.store import labels_match
from etcdop.operator import manifests, observe, sidecar
from etcdop.operator.etcdbackup.cache import upgrade_backup_name
from etcdop.operator.etcdcluster.cache import Caches
from etcdop.operator.model import DesiredSpec, Member, Observed, Stall, UpgradeBackup
from etcdop.operator.restorerequest import RestoreRequest

log = logging.getLogger(__name__)


def client_url(ip: str) -> str:
    return f"http://{observe.url_host(ip)}:{manifests.CLIENT_PORT}"


def pods_of(caches: Caches, ec: EtcdCluster) -> list[Mapping[str, Any]]:
    return list(caches.pods.list(ec.namespace, {manifests.LABEL_CLUSTER: ec.name}))


def pod_ips(pods: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Member name -> address, of the pods that have one and are not being deleted."""
    out = {}
    for p in pods:
        ip = observe.pod_ip(p)
        if ip and not (p.get("metadata") or {}).get("deletionTimestamp"):
            out[str(p["metadata"]["name"])] = ip
    return out


async def observe_cluster(
    caches: Caches,
    ec: EtcdCluster,
    pods: Sequence[Mapping[str, Any]],
    endpoints: Mapping[str, str],
    etcd: EtcdClient,
    domain: str = "cluster.local",
    agent_image: str = sidecar.DEFAULT_AGENT_IMAGE,
    *,
    restore: RestoreRequest | None = None,
    bootstrap_blocked: str = "",
) -> tuple[Observed, str, frozenset[str]]:
    """The snapshot, etcd's cluster ID in hex ("" when no member answered), and the pods
    whose etcd reports a membership other than the one a quorum agrees on. RESTORE is the
    cluster's pending restore request, if any."""
    labelled = caches.claims.list(ec.namespace, {manifests.LABEL_CLUSTER: ec.name})
    ours = {manifests.LABEL_CLUSTER: ec.name, manifests.LABEL_CLUSTER_UID: ec.uid}
    claims = frozenset(
        str(c["metadata"]["name"])
        for c in labelled
        if labels_match(c, ours) and not c["metadata"].get("deletionTimestamp")
    )
    # Claims an earlier cluster of this name left behind are not ours: never used, never
    # deleted, and their names never given to a new member.
    foreign = [str(c["metadata"]["name"]) for c in labelled if not labels_match(c, ours)]
    members: tuple[Member, ...] | None = None
    cluster_id = ""
    unconfirmed = ""
    dissenters: frozenset[str] = frozenset()
    if endpoints:
        views = await _member_lists(ec, endpoints, etcd)
        known = sum(1 for m in ec.status.members if m.id and not m.is_learner)
        if restore is not None:
            known = 0  # the old membership is being replaced; the seed founds a new one
        listed, dissenters, unconfirmed = observe.agreed_membership(views, known)
        if listed is not None:
            answers = await asyncio.gather(
                *(_member(ec, m, endpoints, etcd, dissenters) for m in listed)
            )
            members = tuple(m for m, _ in answers)
            cluster_id = next((f"{cid:x}" for _, cid in answers if cid), "")
    taken = [str(p["metadata"]["name"]) for p in pods] + list(claims) + foreign
    taken += [m.name for m in members or ()]
    nodes = None
    if caches.nodes is not None:
        nodes = {str(n["metadata"]["name"]): n for n in caches.nodes.list(None)}
    stalled = ec.status.stalled
    voter_urls = [
        endpoints[m.name] for m in members or () if m.name in endpoints and not m.is_learner
    ]
    observed = Observed(
        cluster=ec.name,
        spec=replace(
            DesiredSpec.of(ec.spec, manifests.pod_hash(ec, domain, agent_image=agent_image)),
            # without a backup cache nothing could see the backup: none is asked for
            backup_before_upgrade=ec.spec.backup is not None
            and ec.spec.upgrade.backup_before_upgrade
            and caches.backups is not None,
        ),
        pods=tuple(observe.member_pod(p, nodes) for p in pods),
        members=members,
        claims=claims,
        bootstrapped=bool(ec.status.cluster_id),
        compacted_revision=ec.status.compacted_revision,
        defragmented=frozenset(int(i, 16) for i in ec.status.defragmented_members),
        next_member_name=observe.new_member_name(ec.name, taken),
        unconfirmed=unconfirmed,
        restore=restore.uid if restore is not None else "",
        bootstrap_blocked=bootstrap_blocked,
        now=time.time(),
        stalled=Stall(stalled.rollout, stalled.member, stalled.message) if stalled else None,
        cluster_version=await cluster_version(voter_urls),
        upgrade_backup=upgrade_backup_of(caches, ec),
    )
    return observed, cluster_id, dissenters


def upgrade_backup_of(caches: Caches, ec: EtcdCluster) -> UpgradeBackup | None:
    """The backup this cluster took before upgrading to spec.version, if it exists."""
    if caches.backups is None:
        return None
    name = upgrade_backup_name(ec)
    raw = caches.backups.get_by(ec.namespace, name)
    refs = (raw or {}).get("metadata", {}).get("ownerReferences") or []
    if raw is None or not any(r.get("uid") == ec.uid for r in refs):
        return None  # a backup of an earlier cluster of this name is not this one's
    status = raw.get("status") or {}
    phase = str(status.get("phase") or "")
    message = str(status.get("message") or "")
    if phase == "Succeeded" and (raw.get("spec") or {}).get("verify"):
        # With verify set, a backup counts once its restore drill passed.
        verified = status.get("verified")
        if verified is None:
            phase = ""
        elif verified is False:
            phase = "Failed"
    return UpgradeBackup(name, phase if phase in ("Succeeded", "Failed") else "", message)


async def cluster_version(urls: Sequence[str], per_call: float = 1.0) -> str:
    """The cluster version etcd reports on /version ("3.6.0"), from the first voter that
    answers; "" when none does. Not in the gRPC status, hence plain HTTP."""
    async with httpx.AsyncClient(timeout=per_call) as http:
        for url in urls:
            try:
                resp = await http.get(f"{url}/version")
                version = str(resp.json().get("etcdcluster") or "")
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            if version and version != "not_decided":
                return version
    return ""


async def _member_lists(
    ec: EtcdCluster, endpoints: Mapping[str, str], etcd: EtcdClient
) -> dict[str, list[EtcdMember]]:
    """Each answering member's own member list (learners do not answer: that is fine)."""

    async def one(name: str, url: str) -> tuple[str, list[EtcdMember] | None]:
        try:
            return name, await etcd.member_list(url)
        except EtcdError as e:
            log.debug(
                "member list failed", extra={"cluster": ec.key, "member": name, "error": str(e)}
            )
            return name, None

    answers = await asyncio.gather(*(one(n, u) for n, u in endpoints.items()))
    return {name: ms for name, ms in answers if ms is not None}


async def _member(
    ec: EtcdCluster,
    m: EtcdMember,
    endpoints: Mapping[str, str],
    etcd: EtcdClient,
    dissenters: frozenset[str],
) -> tuple[Member, int]:
    name = observe.member_name(m.peer_urls, ec.name)
    url = endpoints.get(name)
    status = health = None
    if url:
        try:
            status, health = await asyncio.gather(etcd.status(url), etcd.health(url))
        except EtcdError:
            status = health = None
    cluster_id = status.cluster_id if status is not None else 0
    view = observe.member_health(status, health)
    if name in dissenters:
        view = replace(view, healthy=False, is_leader=False)  # it answers for another cluster
    return observe.member(m, ec.name, view), cluster_id
