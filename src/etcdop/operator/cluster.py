"""The EtcdCluster reconciler: observe, plan one step, act, report. Level-triggered.

Nothing survives between reconciles but what is in the world: the pods and their annotations,
the etcd membership, and the object's status. Killing the operator at any instant is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from etcdop.api import GROUP, KIND, PLURAL, VERSION, EtcdCluster, InvalidObject
from etcdop.api.etcdcluster import EtcdClusterStatus
from etcdop.etcd import (
    EtcdClient,
    EtcdError,
    LearnerNotReady,
    MembershipChangeRefused,
    initial_cluster,
)
from etcdop.etcd import Member as EtcdMember
from etcdop.kube import apply
from etcdop.kube.client import (
    PDBS,
    PODS,
    PVCS,
    SERVICES,
    ConflictError,
    KubeClient,
    KubeError,
    Resource,
)
from etcdop.kube.events import EventRecorder
from etcdop.kube.store import Store, labels_match
from etcdop.operator import manifests, observe
from etcdop.operator.conditions import compute_status
from etcdop.operator.model import DesiredSpec, Member, Observed
from etcdop.operator.planner import (
    Action,
    AddLearner,
    Bootstrap,
    Compact,
    CreatePod,
    Defragment,
    DeleteClaim,
    DeletePod,
    DisarmAlarm,
    Done,
    MarkFormed,
    MoveLeader,
    PromoteLearner,
    RemoveMember,
    Wait,
    describe,
    plan,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]

REQUEUE_BUSY = 1.0
"""Seconds to the next look after a step: the next step usually follows at once."""
REQUEUE_WAITING = 3.0
REQUEUE_RESYNC = 30.0
"""A settled cluster is still checked now and then: etcd members fail without any API event."""
CACHE_WAIT = 10.0


@dataclass
class Caches:
    """Watch-fed caches of what the operator reads; plans are made on these, not on GETs."""

    clusters: Store
    pods: Store
    claims: Store
    services: Store
    pdbs: Store
    nodes: Store | None = None
    """Nodes, to tell a pod stuck on a lost node from one that is terminating; None when the
    operator may not read nodes (then no pod is ever taken for stuck)."""


ETCDCLUSTERS = Resource(GROUP, VERSION, PLURAL, KIND)
_RESOURCES = {
    "Pod": PODS,
    "PersistentVolumeClaim": PVCS,
    "Service": SERVICES,
    "PodDisruptionBudget": PDBS,
}


def _client_url(ip: str) -> str:
    return f"http://{observe.url_host(ip)}:{manifests.CLIENT_PORT}"


def _initial_cluster_for(members: tuple[Member, ...], member: str, url: str) -> str:
    """What etcd's builder is given for MEMBER's pod: the members named by their peer URLs (one
    not ours has no name and is left out) in name order, MEMBER at URL when not listed yet."""
    listed = sorted((m for m in members if m.name), key=lambda m: m.name)
    new_id = next((m.id for m in listed if m.name == member), None)
    return initial_cluster(listed, new_id, member, url)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _until(check: Callable[[], bool], within: float) -> bool:
    """Wait for the cache to show our own write, so the next plan does not act on stale state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class ClusterReconciler:
    def __init__(
        self,
        caches: Caches,
        kube: KubeClient,
        recorder: EventRecorder,
        *,
        cluster_domain: str = "cluster.local",
        etcd_timeout: float = 3.0,
        on_action: Callable[[EtcdCluster, Action], None] | None = None,
        on_observed: Callable[[EtcdCluster, Observed], None] | None = None,
    ) -> None:
        self.caches = caches
        self.kube = kube
        self.recorder = recorder
        self.domain = cluster_domain
        self.etcd_timeout = etcd_timeout
        self.on_action = on_action
        self.on_observed = on_observed

    # -- the loop body ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        """Take one step for the EtcdCluster KEY (`namespace/name`); return seconds to requeue."""
        namespace, _, name = key.partition("/")
        raw = self.caches.clusters.get_by(namespace, name)
        if raw is None:
            return None  # deleted: the garbage collector removes what it owned
        try:
            ec = EtcdCluster.from_dict(raw)
        except InvalidObject as e:
            await self._invalid(raw, str(e))
            return None
        errors = ec.validate()
        if errors:
            await self._invalid(raw, "; ".join(str(err) for err in errors))
            return None
        if ec.being_deleted:
            return None

        owned_refused = await self._sync_owned(ec)
        pods = self._pods(ec)
        endpoints = {name: _client_url(ip) for name, ip in self._pod_ips(pods).items()}
        async with EtcdClient(
            list(endpoints.values()) or ["http://127.0.0.1:1"],  # no pod yet: calls fail fast
            timeout=self.etcd_timeout,
        ) as etcd:
            observed, cluster_id, dissenters = await self._observe(ec, pods, endpoints, etcd)
            action = plan(observed)
            if self.on_observed:
                self.on_observed(ec, observed)
            log.info(
                "reconcile",
                extra={
                    "cluster": key,
                    "action": type(action).__name__,
                    "reason": action.reason,
                    "detail": describe(action),
                    **({"dissenting": sorted(dissenters)} if dissenters else {}),
                },
            )
            if isinstance(action, RemoveMember):
                # Record the smaller membership first: the next look must not hold the removed
                # voter's absence against the member list (see observe.agreed_membership).
                await self._write_status(ec, raw, observed, action, cluster_id)
            agreeing = [url for name, url in endpoints.items() if name not in dissenters]
            if dissenters and agreeing:
                # membership changes go only to members that share the agreed view
                async with EtcdClient(agreeing, timeout=self.etcd_timeout) as trusted:
                    outcome = await self._act(ec, observed, action, trusted)
            else:
                outcome = await self._act(ec, observed, action, etcd)
        await self._report(ec, raw, observed, action, outcome or owned_refused, cluster_id)
        if self.on_action:
            self.on_action(ec, action)
        if isinstance(action, Done):
            return REQUEUE_RESYNC
        if isinstance(action, Wait) or outcome is not None:
            return REQUEUE_WAITING
        return REQUEUE_BUSY

    # -- observe ---------------------------------------------------------------------------------

    def _pods(self, ec: EtcdCluster) -> list[Mapping[str, Any]]:
        return list(self.caches.pods.list(ec.namespace, {manifests.LABEL_CLUSTER: ec.name}))

    @staticmethod
    def _pod_ips(pods: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        out = {}
        for p in pods:
            ip = observe.pod_ip(p)
            if ip and not (p.get("metadata") or {}).get("deletionTimestamp"):
                out[str(p["metadata"]["name"])] = ip
        return out

    async def _observe(
        self,
        ec: EtcdCluster,
        pods: Sequence[Mapping[str, Any]],
        endpoints: Mapping[str, str],
        etcd: EtcdClient,
    ) -> tuple[Observed, str, frozenset[str]]:
        """The snapshot, etcd's cluster ID in hex ("" when no member answered), and the pods
        whose etcd reports a membership other than the one a quorum agrees on."""
        labelled = self.caches.claims.list(ec.namespace, {manifests.LABEL_CLUSTER: ec.name})
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
            views = await self._member_lists(ec, endpoints, etcd)
            known = sum(1 for m in ec.status.members if m.id and not m.is_learner)
            listed, dissenters, unconfirmed = observe.agreed_membership(views, known)
            if listed is not None:
                answers = await asyncio.gather(
                    *(self._member(ec, m, endpoints, etcd, dissenters) for m in listed)
                )
                members = tuple(m for m, _ in answers)
                cluster_id = next((f"{cid:x}" for _, cid in answers if cid), "")
        taken = [str(p["metadata"]["name"]) for p in pods] + list(claims) + foreign
        taken += [m.name for m in members or ()]
        nodes = None
        if self.caches.nodes is not None:
            nodes = {str(n["metadata"]["name"]): n for n in self.caches.nodes.list(None)}
        observed = Observed(
            cluster=ec.name,
            spec=DesiredSpec.of(ec.spec),
            pods=tuple(observe.member_pod(p, nodes) for p in pods),
            members=members,
            claims=claims,
            bootstrapped=bool(ec.status.cluster_id),
            compacted_revision=ec.status.compacted_revision,
            next_member_name=observe.new_member_name(ec.name, taken),
            unconfirmed=unconfirmed,
        )
        return observed, cluster_id, dissenters

    async def _member_lists(
        self, ec: EtcdCluster, endpoints: Mapping[str, str], etcd: EtcdClient
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
        self,
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

    # -- act -------------------------------------------------------------------------------------

    async def _act(
        self, ec: EtcdCluster, o: Observed, action: Action, etcd: EtcdClient
    ) -> str | None:
        """Carry out ACTION; return why it did not happen (etcd refused, for now) or None."""
        try:
            match action:
                case Bootstrap(member=m):
                    url = manifests.peer_url(ec, m, self.domain)
                    await self._create_member_pod(ec, m, _initial_cluster_for((), m, url), "new")
                case AddLearner(member=m):
                    await etcd.add_learner([manifests.peer_url(ec, m, self.domain)])
                case CreatePod(member=m, initial_cluster_state=state):
                    url = manifests.peer_url(ec, m, self.domain)
                    members = o.members or ()
                    await self._create_member_pod(
                        ec, m, _initial_cluster_for(members, m, url), state
                    )
                case PromoteLearner(member_id=i):
                    await etcd.promote(i)
                case RemoveMember(member_id=i):
                    await etcd.remove(i)
                case MoveLeader(to_id=t):
                    await etcd.move_leader(t)
                case Compact(revision=r):
                    await etcd.compact(r)
                case Defragment(member=m):
                    ip = self._pod_ips(self._pods(ec)).get(m)
                    if ip is None:
                        return f"EtcdError: member {m} has no pod address to defragment"
                    await etcd.defragment(_client_url(ip))
                case DisarmAlarm():
                    await etcd.disarm_nospace()
                case DeletePod(member=m, force=force):
                    await self.kube.delete(
                        PODS, m, ec.namespace, grace_period_seconds=0 if force else None
                    )
                    await _until(lambda: self._pod_gone_or_going(ec, m, force), CACHE_WAIT)
                case MarkFormed(member=m):
                    patch = {"metadata": {"annotations": {manifests.ANN_INITIAL_STATE: "existing"}}}
                    await self.kube.patch(PODS, m, patch, ec.namespace)
                case DeleteClaim(member=m):
                    await self.kube.delete(PVCS, m, ec.namespace)
                    await _until(lambda: self._claim_gone_or_going(ec, m), CACHE_WAIT)
                case Wait() | Done():
                    pass
        except LearnerNotReady as e:
            return f"LearnerNotReady: {e}"
        except MembershipChangeRefused as e:
            return f"MembershipChangeRefused: {e}"
        except EtcdError as e:
            return f"EtcdError: {e}"
        except KubeError as e:
            # Refused by admission (Pod Security, quota), RBAC or validation: say so, retry.
            return f"KubernetesRefused: {e}"
        return None

    def _pod_gone_or_going(self, ec: EtcdCluster, name: str, gone: bool = False) -> bool:
        pod = self.caches.pods.get_by(ec.namespace, name)
        return pod is None or (not gone and bool(pod["metadata"].get("deletionTimestamp")))

    def _claim_gone_or_going(self, ec: EtcdCluster, name: str) -> bool:
        claim = self.caches.claims.get_by(ec.namespace, name)
        return claim is None or bool(claim["metadata"].get("deletionTimestamp"))

    async def _create_member_pod(
        self, ec: EtcdCluster, member: str, initial_cluster: str, state: str
    ) -> None:
        claim = manifests.data_claim(ec, member)
        if claim is not None and self.caches.claims.get_by(ec.namespace, member) is None:
            await self._create(claim)
        await self._create(manifests.member_pod(ec, member, initial_cluster, state, self.domain))
        await _until(lambda: self.caches.pods.get_by(ec.namespace, member) is not None, CACHE_WAIT)

    async def _create(self, obj: Mapping[str, Any]) -> None:
        """Create OBJ; one that exists already (a step repeated after a crash) is fine."""
        with contextlib.suppress(ConflictError):
            await self.kube.create(_RESOURCES[obj["kind"]], dict(obj))

    async def _patch_status(self, raw: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        meta = raw["metadata"]
        await self.kube.patch(
            ETCDCLUSTERS,
            meta["name"],
            {"status": dict(status)},
            meta["namespace"],
            subresource="status",
        )

    async def _sync_owned(self, ec: EtcdCluster) -> str | None:
        """Keep the Services and the PodDisruptionBudget as the spec renders them (the budget
        follows spec.size); return what the API server refused, or None."""
        wanted = [
            (SERVICES, self.caches.services, manifests.peer_service(ec)),
            (SERVICES, self.caches.services, manifests.client_service(ec)),
            (PDBS, self.caches.pdbs, manifests.pod_disruption_budget(ec)),
        ]
        for res, store, obj in wanted:
            try:
                if await apply.sync(self.kube, res, store, obj):
                    what = f"{obj['kind']}/{obj['metadata']['name']}"
                    log.info("owned object synced", extra={"cluster": ec.key, "object": what})
            except KubeError as e:
                return f"KubernetesRefused: {obj['kind']} {obj['metadata']['name']}: {e}"
        return None

    # -- report ----------------------------------------------------------------------------------

    async def _write_status(
        self,
        ec: EtcdCluster,
        raw: Mapping[str, Any],
        o: Observed,
        action: Action,
        cluster_id: str,
        refused: str | None = None,
    ) -> None:
        endpoints = tuple(
            manifests.client_url(ec, m.name, self.domain)
            for m in sorted(o.voters, key=lambda m: m.name)
            if m.name
        )
        status = compute_status(
            o,
            action,
            generation=ec.generation,
            now=_now(),
            previous=ec.status,
            client_endpoints=endpoints,
            cluster_id=ec.status.cluster_id or cluster_id,
            refused=refused,
        )
        if status != ec.status:
            await self._patch_status(raw, status.to_dict())

    async def _report(
        self,
        ec: EtcdCluster,
        raw: Mapping[str, Any],
        o: Observed,
        action: Action,
        refused: str | None,
        cluster_id: str,
    ) -> None:
        await self._write_status(ec, raw, o, action, cluster_id, refused)
        if refused is not None:
            log.warning(
                "step refused",
                extra={"cluster": ec.key, "step": describe(action), "error": refused},
            )
            await self.recorder.record(
                raw, "Warning", "StepRefused", f"{describe(action)}: {refused}; will retry"
            )
        elif not isinstance(action, Wait | Done):
            await self.recorder.record(raw, "Normal", action.reason, describe(action))
        elif isinstance(action, Wait) and action.reason != ec_wait_reason(ec.status):
            await self.recorder.record(raw, "Normal", action.reason, action.message)

    async def _invalid(self, raw: Mapping[str, Any], message: str) -> None:
        meta = raw.get("metadata") or {}
        log.warning(
            "invalid EtcdCluster",
            extra={"cluster": f"{meta.get('namespace')}/{meta.get('name')}", "error": message},
        )
        previous = EtcdClusterStatus.from_dict(raw.get("status"))
        if previous.phase != "Invalid":
            await self.recorder.record(raw, "Warning", "InvalidSpec", message)
        status = previous.to_dict()
        status["phase"] = "Invalid"
        status["observedGeneration"] = int(meta.get("generation", 0))
        await self._patch_status(raw, status)


def ec_wait_reason(status: EtcdClusterStatus) -> str:
    """The reason of the Progressing condition last written (to avoid an Event per requeue)."""
    for c in status.conditions:
        if c.type == "Progressing":
            return c.reason
    return ""
