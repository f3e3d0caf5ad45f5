"""The per-cluster agent token: a Secret made once with a random value, never rotated silently.

Rendering reuses the token already stored, so a corrected label never changes it; a missing
Secret is created with POST, not applied, so a reconcile that runs before the cache has seen a
fresh Secret gets 409 instead of overwriting the token the pods already hold.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api import EtcdCluster
from etcdop.kube.apply import Component
from etcdop.kube.client import SECRETS, ConflictError, KubeClient, Obj
from etcdop.kube.store import Store
from etcdop.operator import manifests, sidecar

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def stored_token(secret: Mapping[str, Any] | None) -> str | None:
    """The token a Secret holds (decoded), or None when it has none."""
    data = (secret or {}).get("data") or {}
    raw = data.get(sidecar.TOKEN_KEY)
    if not raw:
        return None
    return base64.b64decode(raw).decode()


def render_token_secret(ec: EtcdCluster, token: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": sidecar.token_secret_name(ec.name),
            "namespace": ec.namespace,
            "labels": manifests.common_labels(ec),
            "ownerReferences": [manifests.owner_reference(ec)],
        },
        "type": "Opaque",
        "data": {sidecar.TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def cluster_token(secrets_cache: Store, namespace: str, cluster: str) -> str | None:
    """The token of CLUSTER's agents, from the cache (None until the Secret exists)."""
    return stored_token(secrets_cache.get_by(namespace, sidecar.token_secret_name(cluster)))


@dataclass(frozen=True)
class CreateOnce(Component[EtcdCluster]):
    """A Component that is created, never re-rendered from scratch, when missing."""

    async def sync(self, client: KubeClient, desired: Mapping[str, Any]) -> bool:
        meta = desired["metadata"]
        if self.cache.get_by(meta.get("namespace"), meta["name"]) is None:
            try:
                await client.create(self.res, dict(desired))
            except ConflictError:
                return False  # made meanwhile (the cache lags): keep the token it holds
            return True
        return await super().sync(client, desired)


def token_component(secrets_cache: Store) -> CreateOnce:
    def render(ec: EtcdCluster) -> Obj:
        live = secrets_cache.get_by(ec.namespace, sidecar.token_secret_name(ec.name))
        return render_token_secret(ec, stored_token(live) or new_token())

    return CreateOnce(SECRETS, secrets_cache, render)
