"""What a cache-sync timeout says: the resource, its scope, the refused verb, who was refused and
what to grant. Failures are set as the informer records them; no server is involved."""

from __future__ import annotations

import asyncio

import pytest

from etcdop.kube.client import CONFIGMAPS, NAMESPACES, PODS, ApiError, KubeClient, NotFoundError
from etcdop.kube.informer import CacheSyncError, Failure, Informer, wait_for_sync

FORBIDDEN = (
    'pods is forbidden: User "system:serviceaccount:etcdop-system:etcdop" cannot list resource '
    '"pods" in API group "" at the cluster scope'
)
# the informer is never run here, so it needs no working client
NO_CLIENT = KubeClient.__new__(KubeClient)


def test_a_refused_list_names_resource_scope_verb_user_and_grant() -> None:
    informer = Informer(NO_CLIENT, PODS, label_selector="app=etcd")
    informer.failure = Failure("list", ApiError(403, "Forbidden", FORBIDDEN, "GET pods"))
    assert informer.sync_error(60) == (
        "informer for pods (v1) in all namespaces (app=etcd): list refused (403 Forbidden) for "
        "system:serviceaccount:etcdop-system:etcdop; grant list,watch on pods of the core API "
        'group "" cluster-wide (a ClusterRole)'
    )


def test_a_refused_watch_of_a_cluster_scoped_resource() -> None:
    informer = Informer(NO_CLIENT, NAMESPACES)
    informer.failure = Failure("watch", ApiError(403, "Forbidden", "no user named", "watch"))
    assert informer.sync_error(5) == (
        "informer for namespaces (v1) cluster-wide: watch refused (403 Forbidden) for this "
        'identity; grant list,watch on namespaces of the core API group "" cluster-wide '
        "(a ClusterRole)"
    )


def test_a_missing_resource_says_to_install_its_crd() -> None:
    informer = Informer(NO_CLIENT, CONFIGMAPS, namespace="x")
    informer.failure = Failure("list", NotFoundError(404, "NotFound", "not found", "GET"))
    assert "in namespace x: list failed (404 NotFound)" in informer.sync_error(5)
    assert informer.sync_error(5).endswith("install its CRD")


def test_other_failures_and_silence_are_reported_as_they_are() -> None:
    informer = Informer(NO_CLIENT, CONFIGMAPS, namespace="x")
    assert informer.sync_error(5) == (
        "informer for configmaps (v1) in namespace x: not synced after 5s (no list answered); "
        "is the API server reachable?"
    )
    informer.relists = 1
    assert "(no watch accepted after its list)" in informer.sync_error(5)
    informer.failure = Failure("watch", ApiError(500, "InternalError", "etcd down", "watch"))
    assert informer.sync_error(5).endswith("the last watch failed: watch: 500 InternalError: "
                                           "etcd down")


async def test_wait_for_sync_names_only_the_informers_not_synced() -> None:
    synced = Informer(NO_CLIENT, CONFIGMAPS, namespace="a")
    synced.synced.set()
    stuck = Informer(NO_CLIENT, PODS, namespace="b")
    stuck.failure = Failure("list", ApiError(403, "Forbidden", FORBIDDEN, "GET pods"))
    await asyncio.wait_for(wait_for_sync([synced], 0.5), 1)
    with pytest.raises(CacheSyncError) as raised:
        await asyncio.wait_for(wait_for_sync([synced, stuck], 0.1), 1)
    assert raised.value.informers == [str(stuck)]
    assert str(raised.value).startswith("informer for pods (v1) in namespace b: list refused")
