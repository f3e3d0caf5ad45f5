"""Typed verbs over kr8s ``call_api`` on plain dicts: timeouts on every request, retries on
429/5xx that honour Retry-After, server-side apply, and errors that name the object.

kr8s' own status handling is bypassed (``raise_for_status=False``): on a 403 it would rebuild the
shared HTTP client three times, killing every open watch, and it never retries a 429 or a 503.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import kr8s
import kr8s.asyncio

from etcdop.kube.backoff import Backoff

log = logging.getLogger("etcdop.kube.client")

Obj = dict[str, Any]
PatchType = Literal["merge", "json", "strategic"]

_PATCH_CONTENT_TYPES: dict[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
_APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # JSON is valid YAML
# Verbs whose repetition cannot do a second, different thing; POST (create) is not among them.
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "PATCH"})
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Resource:
    """A REST resource: ``group`` is "" for the core API; ``plural`` is the URL segment."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = Resource("", "v1", "pods", "Pod")
SERVICES = Resource("", "v1", "services", "Service")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
CORE_EVENTS = Resource("", "v1", "events", "Event")
EVENTS = Resource("events.k8s.io", "v1", "events", "Event")
PDBS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)


class KubeError(Exception):
    """Any failure talking to the API server."""


class TransportError(KubeError):
    """No answer from the API server: connection refused or reset, or a timeout."""


class IdleTimeout(TransportError):
    """A watch stream carried nothing for longer than the server's bookmark interval."""


class ApiError(KubeError):
    """The API server answered with an error status (its Status reason and message kept)."""

    def __init__(
        self, code: int, reason: str, message: str, what: str, retry_after: float | None = None
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.what = what
        self.retry_after = retry_after
        super().__init__(f"{what}: {code} {reason}: {message}")


class NotFoundError(ApiError):
    """404: the object (or its namespace, or the resource type) does not exist."""


class ConflictError(ApiError):
    """409: a stale resourceVersion (re-read and retry) or the name is already taken."""


class GoneError(ApiError):
    """410: the resourceVersion is older than the server keeps history for: relist."""


_ERROR_CLASSES: dict[int, type[ApiError]] = {404: NotFoundError, 409: ConflictError, 410: GoneError}


def api_error(status: Mapping[str, Any], code: int, what: str) -> ApiError:
    """The typed error for a Status object (a response body or a watch ERROR event)."""
    code = int(status.get("code") or code)
    details = status.get("details") or {}
    retry_after = details.get("retryAfterSeconds") if isinstance(details, Mapping) else None
    cls = _ERROR_CLASSES.get(code, ApiError)
    return cls(
        code,
        str(status.get("reason") or "Unknown"),
        str(status.get("message") or "(no message)"),
        what,
        float(retry_after) if retry_after is not None else None,
    )


def _status_of(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:500]}
    return body if isinstance(body, Mapping) else {}


def _retry_after(response: httpx.Response, err: ApiError) -> float | None:
    header = response.headers.get("Retry-After")
    if header is not None:
        with contextlib.suppress(ValueError):
            return min(_MAX_RETRY_AFTER, max(0.0, float(header)))
    if err.retry_after is not None:
        return min(_MAX_RETRY_AFTER, max(0.0, err.retry_after))
    return None


def retry_delay(
    method: str, code: int, retry_after: float | None, backoff: Backoff
) -> float | None:
    """Seconds to wait before retrying a request that got CODE, or None not to retry it.

    429 is always retried (the server did nothing); 5xx only for verbs whose repetition cannot
    do a second, different thing. The server's Retry-After wins over our backoff."""
    retryable = code == 429 or (code in _RETRY_STATUS and method in _IDEMPOTENT)
    if not retryable:
        return None
    if retry_after is not None:
        return retry_after
    return backoff.next()


@dataclass(frozen=True)
class ObjectList:
    """A complete (all pages) LIST and the resourceVersion to watch from."""

    items: list[Obj]
    resource_version: str


def key_of(obj: Mapping[str, Any]) -> str:
    """The cache and work-queue key: "namespace/name", or "name" when cluster-scoped."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def micro_time(now: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC), as Leases and Events want."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.rpartition("/")
    return (ns if sep else None), name


class KubeClient:
    """The verbs a controller needs, on plain dicts, each bounded by TIMEOUT seconds.

    Reads are retried on 429, 5xx and lost connections; writes on 429 and, when repeating them
    cannot do harm (PUT, PATCH, DELETE), on 5xx. The server's Retry-After wins over our backoff.
    """

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        timeout: float = 30.0,
        attempts: int = 5,
        field_manager: str = "etcdop",
    ) -> None:
        self.api = api  # kr8s caches Api objects weakly: this reference keeps it alive
        self.timeout = timeout
        self.attempts = attempts
        self.field_manager = field_manager

    # -- the verbs --------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", res, namespace=namespace, name=name)
        except NotFoundError:
            return None

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """Every object (all namespaces when NAMESPACE is None), fetched page by page."""
        items: builtins.list[Obj] = []
        params: dict[str, str] = {"limit": str(page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            page = await self.request("GET", res, namespace=namespace, params=params, listing=True)
            for item in page.get("items") or []:
                # list items come without apiVersion and kind; watch events carry them
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                return ObjectList(items, str(meta.get("resourceVersion", "")))
            params["continue"] = cont

    async def create(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or (body.get("metadata") or {}).get("namespace")
        if res.namespaced and not ns:
            name = (body.get("metadata") or {}).get("name")
            raise ValueError(
                f"POST {res} {name}: a namespaced resource needs a namespace "
                "(pass namespace= or set metadata.namespace)"
            )
        return await self.request("POST", res, namespace=ns, body=body, listing=True)

    async def replace(
        self, res: Resource, body: Obj, namespace: str | None = None, subresource: str | None = None
    ) -> Obj:
        """PUT the whole object; its metadata.resourceVersion makes the write conditional."""
        meta = body.get("metadata") or {}
        ns = namespace or meta.get("namespace")
        return await self.request(
            "PUT", res, namespace=ns, name=meta["name"], subresource=subresource, body=body
        )

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Obj | builtins.list[Obj],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
    ) -> Obj:
        """A merge patch by default; put metadata.resourceVersion in it to make it conditional."""
        return await self.request(
            "PATCH",
            res,
            namespace=namespace,
            name=name,
            subresource=subresource,
            body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def apply(
        self,
        res: Resource,
        body: Obj,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        force: bool = True,
    ) -> Obj:
        """Server-side apply of BODY (with apiVersion and kind) as our field manager."""
        meta = body.get("metadata") or {}
        params = {"fieldManager": self.field_manager}
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH",
            res,
            namespace=namespace or meta.get("namespace"),
            name=meta["name"],
            subresource=subresource,
            body=body,
            content_type=_APPLY_CONTENT_TYPE,
            params=params,
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
        uid: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> bool:
        """Delete; False when it was already gone. UID/RESOURCE_VERSION make it conditional."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        pre: Obj = {}
        if uid:
            pre["uid"] = uid
        if resource_version:
            pre["resourceVersion"] = resource_version
        if pre:
            body["preconditions"] = pre
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        try:
            await self.request("DELETE", res, namespace=namespace, name=name, body=body)
        except NotFoundError:
            return False
        return True

    # -- the watch stream -------------------------------------------------------------------

    async def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        idle_timeout: float,
        label_selector: str | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncGenerator[Obj, None]:
        """The raw watch events after RESOURCE_VERSION, bookmarks included, until the server ends
        the stream. Raises GoneError when that version is too old, and IdleTimeout when nothing
        arrived for IDLE_TIMEOUT seconds (a half-open connection looks exactly like that).
        ON_OPEN is called once the server accepted the watch, which may be long before an event."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        what = f"watch {res}" + (f" in {namespace}" if namespace else "")
        timeout = httpx.Timeout(self.timeout, read=idle_timeout + 5)
        try:
            async with self.api.call_api(
                "GET",
                version=res.api_version,
                namespace=namespace,
                url=res.plural,
                params=params,
                stream=True,
                raise_for_status=False,
                timeout=timeout,
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise api_error(_status_of(response), response.status_code, what)
                if on_open is not None:
                    on_open()
                lines = response.aiter_lines()
                while True:
                    try:
                        async with asyncio.timeout(idle_timeout):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise IdleTimeout(
                            f"{what}: nothing received for {idle_timeout:.0f}s"
                        ) from None
                    if not line.strip():
                        continue
                    event: Obj = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise api_error(event.get("object") or {}, 500, what)
                    yield event
        except (httpx.TransportError, kr8s.APITimeoutError, OSError) as e:
            raise TransportError(f"{what}: {type(e).__name__}: {e}") from e

    # -- the one request path ---------------------------------------------------------------

    async def request(
        self,
        method: str,
        res: Resource,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Obj | builtins.list[Obj] | None = None,
        content_type: str = "application/json",
        listing: bool = False,
    ) -> Obj:
        """One call, retried as the class says. LISTING marks collection URLs (list, create)."""
        if res.namespaced and not namespace and not listing:
            raise ValueError(f"{method} {res}/{name}: a namespaced resource needs a namespace")
        url = res.plural
        if name:
            url += f"/{name}"
            if subresource:
                url += f"/{subresource}"
        what = f"{method} {res} {namespace + '/' if namespace else ''}{name or ''}".rstrip()
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["content"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": content_type}
        if params:
            kwargs["params"] = dict(params)
        backoff = Backoff(base=0.2, cap=5.0)
        reauthenticated = False
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                async with (
                    asyncio.timeout(self.timeout),
                    self.api.call_api(
                        method,
                        version=res.api_version,
                        namespace=namespace if res.namespaced else None,
                        url=url,
                        raise_for_status=False,
                        timeout=httpx.Timeout(self.timeout),
                        **kwargs,
                    ) as response,
                ):
                    await response.aread()
            except (httpx.TransportError, kr8s.APITimeoutError, TimeoutError, OSError) as e:
                never_sent = isinstance(e, httpx.ConnectError | httpx.ConnectTimeout)
                if last or not (never_sent or method in _IDEMPOTENT):
                    raise TransportError(f"{what}: {type(e).__name__}: {e}") from e
                delay = backoff.next()
                log.info("retrying %s in %.2fs after %s", what, delay, type(e).__name__)
                await asyncio.sleep(delay)
                continue
            if not response.is_error:
                out: Obj = response.json()
                return out
            if response.status_code == 401 and not reauthenticated and not last:
                # credentials rotated (a projected service-account token): reload them once
                reauthenticated = True
                await self.api.auth.reauthenticate()
                await self.api._create_session()
                continue
            err = api_error(_status_of(response), response.status_code, what)
            pause = (
                None
                if last
                else retry_delay(method, err.code, _retry_after(response, err), backoff)
            )
            if pause is None:
                raise err
            log.info("retrying %s in %.2fs after %s %s", what, pause, err.code, err.reason)
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover
