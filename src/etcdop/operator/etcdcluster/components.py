"""Components: the objects an EtcdCluster owns besides its members, each kept as rendered.

The Services, the PodDisruptionBudget and the agents' token Secret (created once, see token.py)
are configuration (the budget follows spec.size): they
are synced on every reconcile, by server-side apply, and left alone when already as rendered.
Member pods and their claims are membership, not configuration: only the planner changes them.
"""

from __future__ import annotations

import logging

from etcdop.api import EtcdCluster
from etcdop.kube.apply import Component
from etcdop.kube.client import PDBS, SERVICES, KubeClient, KubeError
from etcdop.operator import manifests
from etcdop.operator.etcdcluster.cache import Caches
from etcdop.operator.etcdcluster.token import token_component

log = logging.getLogger(__name__)


def components(caches: Caches) -> tuple[Component[EtcdCluster], ...]:
    """Every owned object of an EtcdCluster that is kept as its spec renders it."""
    parts: tuple[Component[EtcdCluster], ...] = (
        Component(SERVICES, caches.services, manifests.peer_service),
        Component(SERVICES, caches.services, manifests.client_service),
        Component(PDBS, caches.pdbs, manifests.pod_disruption_budget),
    )
    if caches.secrets is not None:
        parts += (token_component(caches.secrets),)
    return parts


async def sync(
    kube: KubeClient, ec: EtcdCluster, parts: tuple[Component[EtcdCluster], ...]
) -> str | None:
    """Keep each of PARTS as rendered for EC; return what the API server refused, or None."""
    for part in parts:
        obj = part.render(ec)
        try:
            if await part.sync(kube, obj):
                what = f"{obj['kind']}/{obj['metadata']['name']}"
                log.info("owned object synced", extra={"cluster": ec.key, "object": what})
        except KubeError as e:
            return f"KubernetesRefused: {obj['kind']} {obj['metadata']['name']}: {e}"
    return None
