"""Acting: carry out the one step the planner chose, on etcd (the facade) or on the API server.

Every step may be repeated (a crash between the step and the next look): creating what exists
already is fine, and after a write we wait for the cache to show it, so that the next plan is
not made on a picture that predates our own step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from etcdop.api import EtcdCluster
from etcdop.etcd import (
    EtcdClient,
    EtcdError,
    LearnerNotReady,
    MembershipChangeRefused,
    initial_cluster,
)
from etcdop.kube.client import PDBS, PODS, PVCS, SERVICES, ConflictError, KubeClient, KubeError
from etcdop.operator import manifests, sidecar
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS, upgrade_backup, upgrade_backup_name
from etcdop.operator.etcdcluster.cache import Caches
from etcdop.operator.etcdcluster.observing import client_url, pod_ips, pods_of
from etcdop.operator.model import Member, Observed
from etcdop.operator.planner import (
    Action,
    AddLearner,
    Bootstrap,
    CancelDowngrade,
    Compact,
    CreatePod,
    Defragment,
    DeleteClaim,
    DeletePod,
    DisarmAlarm,
    Done,
    EnableDowngrade,
    FinishRestore,
    MarkFormed,
    MoveLeader,
    PromoteLearner,
    RemoveMember,
    RestoreSeed,
    StartTraffic,
    StopTraffic,
    TakeBackup,
    Wait,
)
from etcdop.operator.restorerequest import RestoreRequest

log = logging.getLogger(__name__)

CACHE_WAIT = 10.0
"""Seconds to wait for the cache to show our own write."""

_RESOURCES = {
    "Pod": PODS,
    "PersistentVolumeClaim": PVCS,
    "Service": SERVICES,
    "PodDisruptionBudget": PDBS,
}


async def _until(check: Callable[[], bool], within: float) -> bool:
    """Wait for the cache to show our own write, so the next plan does not act on stale state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _initial_cluster_for(members: tuple[Member, ...], member: str, url: str) -> str:
    """What etcd's builder is given for MEMBER's pod: the members named by their peer URLs (one
    not ours has no name and is left out) in name order, MEMBER at URL when not listed yet."""
    listed = sorted((m for m in members if m.name), key=lambda m: m.name)
    new_id = next((m.id for m in listed if m.name == member), None)
    return initial_cluster(listed, new_id, member, url)


class Actor:
    """Carries out planned steps for the EtcdClusters in CACHES."""

    def __init__(
        self,
        caches: Caches,
        kube: KubeClient,
        cluster_domain: str,
        agent_image: str = sidecar.DEFAULT_AGENT_IMAGE,
    ) -> None:
        self.caches = caches
        self.kube = kube
        self.domain = cluster_domain
        self.agent_image = agent_image

    async def act(
        self,
        ec: EtcdCluster,
        o: Observed,
        action: Action,
        etcd: EtcdClient,
        restore: RestoreRequest | None = None,
        bootstrap: RestoreRequest | None = None,
    ) -> str | None:
        """Carry out ACTION; return why it did not happen (etcd refused, for now) or None.
        RESTORE is the cluster's pending restore request (for RestoreSeed), BOOTSTRAP the
        backup a new cluster starts from (for Bootstrap)."""
        try:
            match action:
                case RestoreSeed(member=m, restore=uid):
                    if restore is None or restore.uid != uid:
                        return f"RestoreMissing: no pending restore {uid} on the EtcdCluster"
                    url = manifests.peer_url(ec, m, self.domain)
                    await self._create_member_pod(
                        ec, m, _initial_cluster_for((), m, url), "new", restore
                    )
                case Bootstrap(member=m):
                    url = manifests.peer_url(ec, m, self.domain)
                    await self._create_member_pod(
                        ec, m, _initial_cluster_for((), m, url), "new", bootstrap
                    )
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
                    ip = pod_ips(pods_of(self.caches, ec)).get(m)
                    if ip is None:
                        return f"EtcdError: member {m} has no pod address to defragment"
                    await etcd.defragment(client_url(ip))
                case DisarmAlarm():
                    await etcd.disarm_nospace()
                case DeletePod(member=m, force=force):
                    await self.kube.delete(
                        PODS, m, ec.namespace, grace_period_seconds=0 if force else None
                    )
                    await _until(lambda: self._pod_gone_or_going(ec, m, force), CACHE_WAIT)
                case MarkFormed(member=m):
                    await self._mark_formed(ec, m)
                case DeleteClaim(member=m):
                    await self.kube.delete(PVCS, m, ec.namespace)
                    await _until(lambda: self._claim_gone_or_going(ec, m), CACHE_WAIT)
                case StopTraffic(member=m):
                    await self._serve(ec, (m,), False)
                case StartTraffic(members=ms):
                    await self._serve(ec, ms, True)
                case EnableDowngrade(version=v):
                    await etcd.enable_downgrade(v)
                case TakeBackup():
                    await self._take_backup(ec)
                case CancelDowngrade():
                    await etcd.cancel_downgrade()
                case Wait() | Done() | FinishRestore():
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

    async def _serve(self, ec: EtcdCluster, members: tuple[str, ...], on: bool) -> None:
        """Label the members' pods in or out of the client Service; wait for the cache."""
        value = "true" if on else "false"
        for m in members:
            patch = {"metadata": {"labels": {manifests.LABEL_SERVING: value}}}
            await self.kube.patch(PODS, m, patch, ec.namespace)

        def seen() -> bool:
            for m in members:
                pod = self.caches.pods.get_by(ec.namespace, m)
                labels = (pod or {}).get("metadata", {}).get("labels") or {}
                if pod is not None and labels.get(manifests.LABEL_SERVING) != value:
                    return False
            return True

        await _until(seen, CACHE_WAIT)

    async def _mark_formed(self, ec: EtcdCluster, member: str) -> None:
        """The seed's `existing` annotation, then FORMED_TOLERATION so that the kubelet's
        observedGeneration says when it has the annotation; done once the cache shows both.
        The toleration is best effort: where admission refuses it the generation stays, the
        pod counts as synced at once and the seed serves as it did before the toleration."""
        pod = self.caches.pods.get_by(ec.namespace, member)
        if pod is None:
            return  # gone meanwhile: the next plan sees why
        annotate = {"metadata": {"annotations": {manifests.ANN_INITIAL_STATE: "existing"}}}
        await self.kube.patch(PODS, member, annotate, ec.namespace)
        tolerations = (pod.get("spec") or {}).get("tolerations")
        tolerated = manifests.FORMED_TOLERATION in (tolerations or [])
        if not tolerated:
            # JSON patch "add" appends without a resourceVersion: tolerations only ever grow.
            add = (
                {"op": "add", "path": "/spec/tolerations/-", "value": manifests.FORMED_TOLERATION}
                if tolerations
                else {
                    "op": "add",
                    "path": "/spec/tolerations",
                    "value": [manifests.FORMED_TOLERATION],
                }
            )
            try:
                await self.kube.patch(PODS, member, [add], ec.namespace, patch_type="json")
                tolerated = True
            except KubeError as e:
                log.warning(
                    "seed toleration refused; it serves without waiting for its kubelet",
                    extra={"cluster": f"{ec.namespace}/{ec.name}", "pod": member, "error": str(e)},
                )

        def seen() -> bool:
            now = self.caches.pods.get_by(ec.namespace, member) or {}
            ann = (now.get("metadata") or {}).get("annotations") or {}
            tol = (now.get("spec") or {}).get("tolerations") or []
            return ann.get(manifests.ANN_INITIAL_STATE) == "existing" and (
                not tolerated or manifests.FORMED_TOLERATION in tol
            )

        await _until(seen, CACHE_WAIT)

    def _pod_gone_or_going(self, ec: EtcdCluster, name: str, gone: bool = False) -> bool:
        pod = self.caches.pods.get_by(ec.namespace, name)
        return pod is None or (not gone and bool(pod["metadata"].get("deletionTimestamp")))

    def _claim_gone_or_going(self, ec: EtcdCluster, name: str) -> bool:
        claim = self.caches.claims.get_by(ec.namespace, name)
        return claim is None or bool(claim["metadata"].get("deletionTimestamp"))

    async def _create_member_pod(
        self,
        ec: EtcdCluster,
        member: str,
        initial: str,
        state: str,
        restore: RestoreRequest | None = None,
    ) -> None:
        claim = manifests.data_claim(ec, member)
        if claim is not None and self.caches.claims.get_by(ec.namespace, member) is None:
            await self._create(claim)
        pod = manifests.member_pod(
            ec,
            member,
            initial,
            state,
            self.domain,
            agent_image=self.agent_image,
            restore=restore,
        )
        await self._create(pod)
        await _until(lambda: self.caches.pods.get_by(ec.namespace, member) is not None, CACHE_WAIT)

    async def _take_backup(self, ec: EtcdCluster) -> None:
        """Create the pre-upgrade EtcdBackup (the backup controller takes it) and wait for the
        cache to show it, so the next plan waits on it rather than making it again."""
        backups = self.caches.backups
        if ec.spec.backup is None or backups is None:
            return
        with contextlib.suppress(ConflictError):
            await self.kube.create(ETCDBACKUPS, upgrade_backup(ec, ec.spec.backup))
        name = upgrade_backup_name(ec)
        await _until(lambda: backups.get_by(ec.namespace, name) is not None, CACHE_WAIT)

    async def _create(self, obj: Mapping[str, Any]) -> None:
        """Create OBJ; one that exists already (a step repeated after a crash) is fine."""
        with contextlib.suppress(ConflictError):
            await self.kube.create(_RESOURCES[obj["kind"]], dict(obj))
