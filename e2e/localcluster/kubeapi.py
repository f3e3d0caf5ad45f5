"""The tests' Kubernetes client: plain-dict verbs over kr8s ``call_api`` by full API path, and a
list+watch loop (for the local provisioner) that survives what kr8s' own watch does not (410
Gone, silent server close, half-open connections)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import kr8s
import kr8s.asyncio

log = logging.getLogger("etcdop.localcluster.api")

Obj = dict[str, Any]
EventHandler = Callable[[str, Obj], Awaitable[None]]

REQUEST_TIMEOUT = 30.0


def call_api_args(
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """kr8s `call_api` keywords for a full API PATH ('/api/v1/x' or '/apis/g/v/x') and a JSON
    BODY, so test code can speak in the paths the API documents."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        version, url = parts[1], "/".join(parts[2:])
    else:
        version, url = f"{parts[1]}/{parts[2]}", "/".join(parts[3:])
    kwargs: dict[str, Any] = {"version": version, "url": url}
    if body is not None:
        kwargs["content"] = json.dumps(body)
        kwargs["headers"] = {"Content-Type": content_type}
    if params:
        kwargs["params"] = params
    return kwargs


class ApiError(RuntimeError):
    """A Kubernetes API call answered with an error status; STATUS and BODY say which."""

    def __init__(self, method: str, path: str, status: int, body: Obj) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status}: {body.get('message', body)}")


class KubeClient:
    """Plain-dict verbs over kr8s' `call_api`, each bounded by a timeout.

    Paths are full API paths (`/api/v1/...`, `/apis/group/version/...`).
    """

    def __init__(self, api: kr8s.asyncio.Api) -> None:
        self.api = api

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> tuple[int, Obj]:
        """(HTTP status, decoded body); never raises for an error status."""
        kwargs = call_api_args(path, body, content_type, params)
        async with (
            asyncio.timeout(REQUEST_TIMEOUT),
            self.api.call_api(method, raise_for_status=False, **kwargs) as r,
        ):
            try:
                data = r.json()
            except ValueError:
                data = {"message": r.text}
            return r.status_code, data if isinstance(data, dict) else {"items": data}

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Obj:
        status, data = await self.call(method, path, body, **kw)
        if status >= 400:
            raise ApiError(method, path, status, data)
        return data

    async def get(self, path: str) -> Obj | None:
        status, data = await self.call("GET", path)
        if status == 404:
            return None
        if status >= 400:
            raise ApiError("GET", path, status, data)
        return data

    async def items(self, path: str, label_selector: str | None = None) -> list[Obj]:
        params = {"labelSelector": label_selector} if label_selector else None
        data = await self.request("GET", path, params=params)
        return list(data.get("items") or [])

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path: str) -> None:
        status, data = await self.call("DELETE", path)
        if status >= 400 and status != 404:
            raise ApiError("DELETE", path, status, data)


async def list_watch(
    kube: KubeClient,
    path: str,
    handler: EventHandler,
    synced: asyncio.Event,
    params: dict[str, str] | None = None,
) -> None:
    """Keep HANDLER told of every object under PATH: ADDED/MODIFIED/DELETED, with deletes
    synthesised after a relist. Runs until cancelled."""
    known: dict[str, Obj] = {}
    backoff = 0.5
    where = call_api_args(path)
    while True:
        try:
            items: list[Obj] = []
            cont = ""
            while True:
                p = dict(params or {}, limit="500")
                if cont:
                    p["continue"] = cont
                page = await kube.request("GET", path, params=p)
                items.extend(page.get("items", []))
                cont = page.get("metadata", {}).get("continue", "")
                rv = page.get("metadata", {}).get("resourceVersion", "")
                if not cont:
                    break
            fresh = {o["metadata"]["uid"]: o for o in items}
            for uid in list(known):
                if uid not in fresh:
                    await handler("DELETED", known.pop(uid))
            for uid, o in fresh.items():
                kind = "MODIFIED" if uid in known else "ADDED"
                known[uid] = o
                await handler(kind, o)
            synced.set()
            backoff = 0.5
            while True:
                wp = dict(
                    params or {},
                    watch="1",
                    resourceVersion=rv,
                    allowWatchBookmarks="true",
                    timeoutSeconds=str(random.randint(240, 360)),
                )
                async with kube.api.call_api(
                    "GET",
                    version=where["version"],
                    url=where["url"],
                    params=wp,
                    stream=True,
                    timeout=None,
                ) as r:
                    lines = r.aiter_lines()
                    while True:
                        try:
                            async with asyncio.timeout(420):
                                line = await anext(lines)
                        except StopAsyncIteration:
                            break
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        typ, obj = ev.get("type"), ev.get("object", {})
                        if typ == "ERROR":
                            raise _Gone() if obj.get("code") == 410 else RuntimeError(str(obj))
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if typ == "BOOKMARK":
                            continue
                        uid = obj["metadata"]["uid"]
                        if typ == "DELETED":
                            known.pop(uid, None)
                        else:
                            known[uid] = obj
                        await handler(typ, obj)
        except asyncio.CancelledError:
            raise
        except _Gone:
            continue
        except (
            httpx.HTTPError,
            kr8s.ServerError,
            ApiError,
            RuntimeError,
            TimeoutError,
            OSError,
            json.JSONDecodeError,
        ) as e:
            if _status(e) == 410:
                continue
            log.warning("watch %s failed, relisting in %.1fs: %s", path, backoff, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


class _Gone(Exception):
    """The watch's resourceVersion is too old: relist."""



def _status(e: BaseException) -> int | None:
    if isinstance(e, ApiError):
        return e.status
    if isinstance(e, kr8s.ServerError) and e.response is not None:
        return int(e.response.status_code)
    return None
