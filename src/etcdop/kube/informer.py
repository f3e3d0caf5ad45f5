"""A watch-driven cache of one resource type (list + watch), the part kr8s' watch is not.

It keeps the LIST's resourceVersion and watches from there with bookmarks, so restarts resume
instead of relisting; it relists only on 410 Gone, and then tells handlers about every object
that vanished meanwhile. Each watch asks the server to end it after a jittered timeoutSeconds;
as the server sends a bookmark every minute (measured on 1.36), a stream silent for longer than
IDLE_TIMEOUT is taken for half-open and replaced.

``synced`` means the first LIST is in the store *and* the server accepted a watch from it: a
cache listed but refused its watch (RBAC granting list without watch) would never change again.
``wait_for_sync`` bounds the wait, so that a leader whose informers are refused does not hold the
lease reconciling nothing: it raises an error naming the resource, the verb and what to grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from etcdop.kube.backoff import Backoff
from etcdop.kube.client import (
    ApiError,
    GoneError,
    IdleTimeout,
    KubeClient,
    KubeError,
    Obj,
    Resource,
)
from etcdop.kube.store import Change, Store

log = logging.getLogger("etcdop.kube.informer")

Handler = Callable[[Change], None]
Transform = Callable[[Obj], Obj]
Verb = Literal["list", "watch"]

_USER = re.compile(r'User "([^"]+)"')


@dataclass(frozen=True)
class Failure:
    """The informer's last failed request, kept until that verb next succeeds."""

    verb: Verb
    error: Exception


class CacheSyncError(KubeError):
    """Informers not synced in time; the message says, for each, what failed and what to do."""

    def __init__(self, informers: list[str], message: str) -> None:
        self.informers = informers
        super().__init__(message)


def drop_managed_fields(obj: Obj) -> Obj:
    """The default transform: managedFields are often the bulk of an object and no controller
    of ours reads them from the cache."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class Informer:
    """Keeps ``store`` equal to the server's objects of RES (in NAMESPACE, or all namespaces;
    matching LABEL_SELECTOR), each passed through TRANSFORM, and calls each handler with every
    change, in order.

    Handlers run on the watch task: they must be quick and must not block (enqueue a key)."""

    def __init__(
        self,
        client: KubeClient,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        watch_timeout: tuple[int, int] = (240, 480),
        idle_timeout: float = 150.0,
        page_size: int = 500,
        backoff: Backoff | None = None,
        rand: random.Random | None = None,
        transform: Transform | None = drop_managed_fields,
    ) -> None:
        lo, hi = watch_timeout
        if not 1 <= lo <= hi:
            raise ValueError(
                f"Informer({res}): watch_timeout {watch_timeout} must be (lo, hi), 1 <= lo <= hi"
            )
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.idle_timeout = idle_timeout
        self.page_size = page_size
        self.transform = transform
        self.store = Store()
        self.synced = asyncio.Event()
        self.relists = 0  # LISTs done (the first one included)
        self.watches = 0  # watch streams opened
        self.failure: Failure | None = None
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._rand = rand or random.Random()
        self._rv = ""
        self._handlers: list[Handler] = []

    def __str__(self) -> str:
        sel = f" ({self.label_selector})" if self.label_selector else ""
        return f"informer for {self.res.plural} ({self.res.api_version}) {self.scope}{sel}"

    @property
    def scope(self) -> str:
        if not self.res.namespaced:
            return "cluster-wide"
        return f"in namespace {self.namespace}" if self.namespace else "in all namespaces"

    def sync_error(self, timeout: float) -> str:
        """Why this informer is not synced after TIMEOUT seconds, and what to do about it."""
        failure = self.failure
        if failure is None:
            step = "no watch accepted after its list" if self.relists else "no list answered"
            return f"{self}: not synced after {timeout:g}s ({step}); is the API server reachable?"
        err = failure.error
        if isinstance(err, ApiError) and err.code == 403:
            found = _USER.search(err.message)
            user = found.group(1) if found else "this identity"
            return (
                f"{self}: {failure.verb} refused ({err.code} {err.reason}) for {user}; "
                f"grant list,watch on {self._rbac_target()}"
            )
        if isinstance(err, ApiError) and err.code == 404:
            return (
                f"{self}: {failure.verb} failed (404 {err.reason}); the server does not serve "
                f"{self.res.plural} of {self.res.api_version}: install its CRD"
            )
        return f"{self}: not synced after {timeout:g}s; the last {failure.verb} failed: {err}"

    def _rbac_target(self) -> str:
        group = f'API group "{self.res.group}"' if self.res.group else 'the core API group ""'
        where = (
            f"in namespace {self.namespace} (a Role)"
            if self.res.namespaced and self.namespace
            else "cluster-wide (a ClusterRole)"
        )
        return f"{self.res.plural} of {group} {where}"

    @property
    def resource_version(self) -> str:
        """The version the cache is at: the next watch resumes after it."""
        return self._rv

    def reset(self) -> None:
        """Forget every object without telling handlers, so that the next LIST reports each one
        as added: a new leader must look at everything, not only at what changed meanwhile."""
        self.store.replace([])
        self._rv = ""

    def add_handler(self, handler: Handler) -> None:
        """Call HANDLER on every later change; add handlers before ``run`` to miss none."""
        self._handlers.append(handler)

    def start(self) -> asyncio.Task[None]:
        """``run`` as a task, with ``synced`` cleared at once (not when the task first runs)."""
        self.synced.clear()
        return asyncio.create_task(self.run(), name=str(self))

    async def run(self) -> None:
        """List, then watch, forever (until cancelled), recovering from every failure.

        ``synced`` is set once this run's first LIST is in the store and a watch from it was
        accepted; run again after a stop, the informer keeps its store and tells handlers what
        changed meanwhile."""
        self.synced.clear()
        while True:
            try:
                await self._relist()
            except (KubeError, ValueError, KeyError) as e:
                self.failure = Failure("list", e)
                delay = self._backoff.next()
                log.warning("%s: list failed, retrying in %.1fs: %s", self, delay, e)
                await asyncio.sleep(delay)
                continue
            await self._watch_until_gone()

    async def _relist(self) -> None:
        listing = await self.client.list(
            self.res,
            self.namespace,
            label_selector=self.label_selector,
            page_size=self.page_size,
        )
        self.relists += 1
        items = listing.items
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        changes = self.store.replace(items)
        self._rv = listing.resource_version
        self.failure = None
        log.debug(
            "%s: listed %d objects at %s, %d changes", self, len(self.store), self._rv, len(changes)
        )
        self._emit(changes)

    async def _watch_until_gone(self) -> None:
        """Watch stream after watch stream from the last version seen, until 410 Gone."""
        loop = asyncio.get_running_loop()
        fresh = True  # the first watch after a LIST starts from that LIST's version
        while True:
            started = loop.time()
            first, fresh = fresh, False
            try:
                delivered = await self._watch_once()
            except GoneError as e:
                log.info("%s: %s; relisting", self, e.message)
                if first:  # too old straight after a LIST: do not relist in a tight loop
                    await asyncio.sleep(self._backoff.next())
                return
            except IdleTimeout as e:  # the server sends bookmarks every minute: this one is dead
                log.info("%s: %s; resuming from %s", self, e, self._rv)
                continue
            except (KubeError, ValueError, KeyError) as e:
                self.failure = Failure("watch", e)
                delay = self._backoff.next()
                log.warning(
                    "%s: watch failed, resuming from %s in %.1fs: %s", self, self._rv, delay, e
                )
                await asyncio.sleep(delay)
                continue
            if not delivered and loop.time() - started < 1.0:
                # ended at once and empty: do not spin on a server or proxy that does that
                await asyncio.sleep(self._backoff.next())
            elif not delivered:
                self._backoff.reset()

    async def _watch_once(self) -> int:
        """One watch stream, until the server ends it; returns how many events it carried."""
        lo, hi = self.watch_timeout
        timeout_seconds = self._rand.randint(lo, hi)
        self.watches += 1
        delivered = 0
        stream = self.client.watch(
            self.res,
            self.namespace,
            self._rv,
            timeout_seconds=timeout_seconds,
            idle_timeout=min(self.idle_timeout, timeout_seconds + 30.0),
            label_selector=self.label_selector,
            on_open=self._watch_opened,
        )
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if not delivered:
                    self._backoff.reset()  # the stream works: a later failure starts afresh
                delivered += 1
                obj: Obj = event["object"]
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if event["type"] != "BOOKMARK":
                    if self.transform is not None:
                        obj = self.transform(obj)
                    self._emit(self.store.apply(event["type"], obj))
                if rv:
                    self._rv = str(rv)
        return delivered

    def _watch_opened(self) -> None:
        self.failure = None
        self.synced.set()

    def _emit(self, changes: list[Change]) -> None:
        for change in changes:
            for handler in self._handlers:
                try:
                    handler(change)
                except Exception:  # one broken handler must not stop the cache
                    log.exception(
                        "%s: handler %r failed on %s %s", self, handler, change.type, change.key
                    )


async def wait_for_sync(informers: Iterable[Informer], within: float) -> None:
    """Wait until every informer is synced. After WITHIN seconds raise CacheSyncError naming
    each one that is not, and why: a leader must not hold the lease reconciling nothing."""
    pending = list(informers)
    try:
        async with asyncio.timeout(within):
            for informer in pending:
                await informer.synced.wait()
    except TimeoutError:
        laggards = [i for i in pending if not i.synced.is_set()]
        reasons = [i.sync_error(within) for i in laggards]
        log.error(
            "caches not synced after %gs",
            within,
            extra={"informers": [str(i) for i in laggards], "reasons": reasons},
        )
        raise CacheSyncError([str(i) for i in laggards], "; ".join(reasons)) from None


# -- handlers that map a change to the work-queue key of the object to reconcile ----------------


def enqueue_object(add: Callable[[str], None]) -> Handler:
    """Reconcile the changed object itself."""

    def handler(change: Change) -> None:
        add(change.key)

    return handler


def _owner_keys(obj: Mapping[str, Any], kind: str, api_group: str) -> list[str]:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    keys = []
    for ref in meta.get("ownerReferences") or []:
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if ref.get("controller") and ref.get("kind") == kind and group == api_group:
            keys.append(f"{ns}/{ref['name']}" if ns else str(ref["name"]))
    return keys


def enqueue_owner(add: Callable[[str], None], kind: str, api_group: str) -> Handler:
    """Reconcile the controlling owner (of KIND in API_GROUP) of the changed object, before
    and after the change: a pod that changed hands wakes both owners."""

    def handler(change: Change) -> None:
        keys = _owner_keys(change.obj, kind, api_group)
        if change.old is not None:
            keys += _owner_keys(change.old, kind, api_group)
        for key in dict.fromkeys(keys):
            add(key)

    return handler


def enqueue_by_label(add: Callable[[str], None], label: str) -> Handler:
    """Reconcile the object named by the LABEL of the changed one, in its namespace."""

    def handler(change: Change) -> None:
        for obj in (change.obj, change.old):
            if obj is None:
                continue
            meta = obj.get("metadata") or {}
            name = (meta.get("labels") or {}).get(label)
            if name:
                ns = meta.get("namespace")
                add(f"{ns}/{name}" if ns else str(name))

    return handler
