"""Thin JSON helpers over kr8s ``call_api`` and a list+watch loop that survives what kr8s'
own watch does not (410 Gone, silent server close, half-open connections)."""

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


class Kube:
    """The verbs the provisioner and the node tests need, on plain dicts, each with a timeout."""

    def __init__(self, api: kr8s.asyncio.Api) -> None:
        self.api = api

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, Any] | None = None,
        ok_missing: bool = False,
    ) -> Obj | None:
        kwargs = call_api_args(path, body, content_type, params)
        try:
            async with (
                asyncio.timeout(REQUEST_TIMEOUT),
                self.api.call_api(method, **kwargs) as r,
            ):
                data: Obj = r.json()
                return data
        except kr8s.ServerError as e:
            if ok_missing and e.response is not None and e.response.status_code == 404:
                return None
            raise
        except httpx.TransportError as e:
            # A connection reset is an OSError to every caller here: each already retries those
            # (a kubelet never gives up a pod because one status write was cut off).
            raise ConnectionError(f"{method} {path}: {type(e).__name__}: {e}") from e

    async def get(self, path: str) -> Obj | None:
        return await self.request("GET", path, ok_missing=True)

    async def create(self, path: str, body: Obj) -> Obj:
        out = await self.request("POST", path, body)
        assert out is not None
        return out

    async def merge_patch(self, path: str, body: Obj) -> Obj | None:
        return await self.request(
            "PATCH", path, body, "application/merge-patch+json", ok_missing=True
        )

    async def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        return await self.request("DELETE", path, body, ok_missing=True)


def status_code(e: BaseException) -> int | None:
    if isinstance(e, kr8s.ServerError) and e.response is not None:
        return int(e.response.status_code)
    return None


async def list_watch(
    kube: Kube,
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
                assert page is not None
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
            RuntimeError,
            TimeoutError,
            OSError,
            json.JSONDecodeError,
        ) as e:
            if status_code(e) == 410:
                continue
            log.warning("watch %s failed, relisting in %.1fs: %s", path, backoff, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


class _Gone(Exception):
    """The watch's resourceVersion is too old: relist."""

