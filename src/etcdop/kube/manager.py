"""The Manager: one runtime for every controller of the operator.

A controller is a registration (``Controller``): its primary kind, the kinds it owns or watches
and how a change to one of those maps to primary keys, a reconcile function and a worker count.
The Manager builds one informer per (resource, label selector), shared by every controller that
watches it, and runs everything only while it leads (``lead``): each term starts with empty
caches (so every object is looked at, as by a fresh process) and fresh queues, waits for the
caches to sync (``wait_for_sync``: a leader whose caches RBAC refuses gives up with an error
naming what to grant) and ends, informers, workers and in-flight reconciles alike, when the
lease is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etcdop.kube import metrics
from etcdop.kube.client import KubeClient, Obj, Resource
from etcdop.kube.informer import CacheSyncError, Informer, wait_for_sync
from etcdop.kube.leader import LeaderElector
from etcdop.kube.store import Change, Store
from etcdop.kube.workqueue import Reconcile, WorkQueue, run_workers

log = logging.getLogger("etcdop.kube.manager")

KeysOf = Callable[[Obj], Iterable[str]]
"""The keys (`namespace/name`) of the primary objects a watched object concerns."""

DEPTH_PERIOD = 2.0
"""Seconds between two readings of each queue's depth for the metric."""


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def by_label(label: str) -> KeysOf:
    """The primary named by the object's LABEL, in the object's namespace."""

    def keys(obj: Obj) -> list[str]:
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(label)
        return [_key(meta.get("namespace"), str(name))] if name else []

    return keys


def by_owner(owner: Resource) -> KeysOf:
    """The primary that controls the object (its ownerReference marked controller), of any
    version of OWNER's group."""

    def keys(obj: Obj) -> list[str]:
        meta = obj.get("metadata") or {}
        return [
            _key(meta.get("namespace"), str(ref["name"]))
            for ref in meta.get("ownerReferences") or []
            if ref.get("controller")
            and ref.get("kind") == owner.kind
            and str(ref.get("apiVersion", "")).rpartition("/")[0] == owner.group
        ]

    return keys


@dataclass(frozen=True)
class Watch:
    """A kind a controller watches besides its primary. Each change is mapped by KEYS, before
    and after the change (an object that changed hands wakes both primaries)."""

    res: Resource
    keys: KeysOf
    label_selector: str | None = None


def owns(
    res: Resource,
    *,
    owner: Resource | None = None,
    label: str | None = None,
    selector: str | None = None,
) -> Watch:
    """An owned kind, mapped to its owner by ownerReference (OWNER) or by LABEL."""
    if (owner is None) == (label is None):
        raise ValueError(f"owns({res}): give exactly one of owner= (by reference) or label=")
    return Watch(res, by_owner(owner) if owner is not None else by_label(str(label)), selector)


def spec_changed(change: Change) -> bool:
    """Anything but the status changed: our own status writes must not wake the reconciler
    again (a loop); the requeue after each reconcile covers what has no event."""
    if change.type != "updated" or change.old is None:
        return True
    old, new = change.old.get("metadata") or {}, change.obj.get("metadata") or {}
    return any(
        old.get(k) != new.get(k)
        for k in ("generation", "deletionTimestamp", "labels", "annotations")
    )


@dataclass(frozen=True)
class Controller:
    """One controller: reconcile NAME's queue of primary keys with WORKERS workers.

    NAME names the queue (metrics, logs); the reconcile metrics carry the primary's kind.
    RECONCILE returns seconds to the next look (None: until something changes) and may raise
    (retried with backoff)."""

    name: str
    primary: Resource
    reconcile: Reconcile[str]
    owns: Sequence[Watch] = ()
    watches: Sequence[Watch] = ()
    workers: int = 1
    primary_filter: Callable[[Change], bool] = spec_changed
    """Which changes of a primary object queue it (by default: not status-only updates)."""


@dataclass
class _Term:
    """What one term of leadership runs on: a fresh queue per controller."""

    queues: dict[str, WorkQueue[str]] = field(default_factory=dict)


class Manager:
    """Registers controllers, shares their informers, and runs them under the leader lease."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str | None = None,
        cache_sync_timeout: float = 60.0,
        informer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.cache_sync_timeout = cache_sync_timeout
        self.controllers: list[Controller] = []
        self.informers: dict[tuple[Resource, str | None], Informer] = {}
        self._informer_options = dict(informer_options or {})
        self._term: _Term | None = None

    # -- building ---------------------------------------------------------------------------

    def informer(self, res: Resource, label_selector: str | None = None) -> Informer:
        """The one informer of RES (in the Manager's namespace, or cluster-wide for a
        cluster-scoped kind) matching LABEL_SELECTOR; created on first use."""
        found = self.informers.get((res, label_selector))
        if found is None:
            namespace = self.namespace if res.namespaced else None
            found = Informer(
                self.client,
                res,
                namespace=namespace,
                label_selector=label_selector,
                **self._informer_options,
            )
            self.informers[(res, label_selector)] = found
        return found

    def store(self, res: Resource, label_selector: str | None = None) -> Store:
        """The cache a reconciler reads RES from: valid for the Manager's life."""
        return self.informer(res, label_selector).store

    def register(self, controller: Controller) -> None:
        if controller.workers < 1:
            raise ValueError(f"controller {controller.name}: workers={controller.workers}")
        if any(c.name == controller.name for c in self.controllers):
            raise ValueError(f"controller {controller.name} is registered already")
        self.controllers.append(controller)
        name = controller.name

        def primary(change: Change) -> None:
            if controller.primary_filter(change):
                self._add(name, change.key)

        self.informer(controller.primary).add_handler(primary)
        for watch in (*controller.owns, *controller.watches):
            self.informer(watch.res, watch.label_selector).add_handler(
                self._mapper(name, watch.keys)
            )

    def _mapper(self, name: str, keys_of: KeysOf) -> Callable[[Change], None]:
        def handler(change: Change) -> None:
            keys = list(keys_of(change.obj))
            if change.old is not None:
                keys += keys_of(change.old)
            for key in dict.fromkeys(keys):
                self._add(name, key)

        return handler

    def _add(self, name: str, key: str) -> None:
        term = self._term
        if term is not None:  # informers run only during a term: this is always the case
            term.queues[name].add(key)

    def queue(self, name: str) -> WorkQueue[str] | None:
        """The queue of controller NAME in the current term (None when not running)."""
        return None if self._term is None else self._term.queues.get(name)

    # -- running ----------------------------------------------------------------------------

    async def lead(self, elector: LeaderElector) -> None:
        """Run every controller while ELECTOR holds the lease, stopping all when it is lost and
        starting afresh when it is won back. Raises CacheSyncError (the lease handed back)."""
        await elector.lead(self.run)

    async def run(self) -> None:
        """One term: sync the caches, then reconcile until cancelled."""
        if not self.controllers:
            raise ValueError("Manager.run: no controller registered")
        term = _Term({c.name: WorkQueue(name=c.name) for c in self.controllers})
        informers = list(self.informers.values())
        for informer in informers:
            informer.reset()
        self._term = term
        try:
            async with asyncio.TaskGroup() as tasks:
                for informer in informers:
                    tasks.create_task(informer.run(), name=str(informer))
                await wait_for_sync(informers, self.cache_sync_timeout)
                log.info(
                    "caches synced; reconciling",
                    extra={"workers": {c.name: c.workers for c in self.controllers}},
                )
                for c in self.controllers:
                    queue = term.queues[c.name]
                    tasks.create_task(_report_depth(queue), name=f"{c.name}-depth")
                    tasks.create_task(
                        run_workers(queue, c.workers, c.reconcile, _observer(c)),
                        name=f"{c.name}-workers",
                    )
        except* CacheSyncError as group:  # the TaskGroup wraps it; it is the one error to report
            raise group.exceptions[0] from None
        finally:
            self._term = None
            for queue in term.queues.values():
                queue.shutdown()


def _observer(c: Controller) -> Callable[[str, float, BaseException | None], None]:
    kind = c.primary.kind

    def observe(key: str, seconds: float, error: BaseException | None) -> None:
        metrics.RECONCILE_SECONDS.labels(kind).observe(seconds)
        metrics.RECONCILES.labels(kind, "error" if error else "ok").inc()
        if error is not None:
            metrics.RECONCILE_ERRORS.labels(kind).inc()

    return observe


async def _report_depth(queue: WorkQueue[str]) -> None:
    gauge = metrics.QUEUE_DEPTH.labels(queue.name)
    while True:
        gauge.set(queue.depth)
        await asyncio.sleep(DEPTH_PERIOD)


__all__ = [
    "Controller",
    "KeysOf",
    "Manager",
    "Watch",
    "by_label",
    "by_owner",
    "owns",
    "spec_changed",
]
