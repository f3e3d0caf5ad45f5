"""The agent's HTTP API (aiohttp): `/healthz`, `/metrics`, `POST /v1/backups`, `/v1/verify`,
`/v1/backups/delete`.

Every route needs the per-cluster token; a refused request is logged as a refusal and nothing
else happens. Requests name where to store (bucket, endpoint...) but never carry credentials:
those are read from the mounted Secret directory (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from etcdop.agent import memory
from etcdop.agent.auth import TokenCheck
from etcdop.agent.backup import BackupPlan, take_backup
from etcdop.agent.drill import DrillTools, run_drill
from etcdop.agent.metrics import AgentMetrics
from etcdop.agent.snapshot_check import SnapshotCorrupt
from etcdop.etcd import EtcdClient, EtcdError
from etcdop.objectstore import (
    COMPRESSIONS,
    AbortRetrier,
    BackupKey,
    Credentials,
    ObjectStore,
    StoreConfig,
    StoreError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AgentSettings:
    etcd_endpoint: str
    token_file: Path
    credentials_dir: Path
    plan: BackupPlan  # namespace, cluster, member, part size, parts in flight
    drill: DrillTools


class Agent:
    """State shared by the handlers: one job at a time, the etcd client, pending aborts."""

    def __init__(self, settings: AgentSettings, etcd: EtcdClient) -> None:
        self.settings = settings
        self.etcd = etcd
        self.tokens = TokenCheck(settings.token_file)
        self.metrics = AgentMetrics(settings.plan.namespace, settings.plan.cluster)
        self.aborts = AbortRetrier()
        self.metrics.pending_aborts.set_function(lambda: len(self.aborts))
        self.busy = asyncio.Lock()

    def store(self, body: dict[str, Any]) -> ObjectStore:
        storage = _object(body, "storage")
        secret = _str(storage, "credentialsSecret")
        config = StoreConfig(
            bucket=_str(storage, "bucket"),
            credentials=Credentials.from_dir(self.settings.credentials_dir, secret),
            endpoint=_str(storage, "endpoint"),
            region=_str(storage, "region") or "us-east-1",
            force_path_style=bool(storage.get("forcePathStyle", False)),
            encryption=_str(body, "encryption"),
        )
        return ObjectStore(config, on_abort_failed=self.aborts.add)


AGENT = web.AppKey("agent", Agent)


def build_app(agent: Agent) -> web.Application:
    app = web.Application(middlewares=[_auth(agent)])
    app[AGENT] = agent
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/v1/backups", _backup)
    app.router.add_post("/v1/verify", _verify)
    app.router.add_post("/v1/backups/delete", _delete)
    app.cleanup_ctx.append(_retry_aborts)
    return app


def _auth(agent: Agent) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not agent.tokens.allows(request.headers.get("Authorization")):
            agent.metrics.refused.inc()
            log.warning(
                "request refused: missing or wrong token",
                extra={"method": request.method, "path": request.path, "peer": request.remote},
            )
            return _error(
                401,
                "Unauthorized",
                "missing or wrong token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return check


async def _retry_aborts(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[AGENT].aborts.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    return web.json_response({"status": "ok", "busy": agent.busy.locked()})


async def _metrics(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    body = generate_latest(agent.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _backup(request: web.Request) -> web.Response:
    """Body: {"storage": {...}, "compression": "" | "zstd", "encryption": "" | "SSE-S3" |
    "SSE-C"}. 201 with {"metadataKey", "backup": <metadata>} or an error naming the cause."""
    agent = request.app[AGENT]
    try:
        body = await _json(request)
        compression = _str(body, "compression")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of '', 'zstd'")
        plan = replace(
            agent.settings.plan,
            prefix=_str(_object(body, "storage"), "prefix"),
            compression=compression,
        )
        store = agent.store(body)
    except ValueError as exc:
        return _error(400, "InvalidRequest", str(exc))
    if agent.busy.locked():
        return _error(409, "Busy", "a backup or drill is running on this member; retry later")
    async with agent.busy:
        started = time.monotonic()
        try:
            meta = await take_backup(agent.etcd, agent.settings.etcd_endpoint, store, plan)
        except (StoreError, EtcdError, SnapshotCorrupt) as exc:
            reason = _reason(exc)
            agent.metrics.failure(reason)
            log.error("backup failed", extra={"reason": reason, "error": str(exc)})
            return _error(502, reason, str(exc))
        except Exception as exc:
            agent.metrics.failure("Internal")
            log.exception("backup failed")
            return _error(500, "Internal", f"{type(exc).__name__}: {exc}")
        finally:
            memory.give_back()
    agent.metrics.backup_duration.observe(time.monotonic() - started)
    agent.metrics.backup_size.set(meta.size)
    agent.metrics.last_success.set_to_current_time()
    agent.metrics.backups.inc()
    key = meta.snapshot_key.rsplit("/", 1)[0] + "/metadata.json"
    return web.json_response({"metadataKey": key, "backup": meta.to_json()}, status=201)


async def _verify(request: web.Request) -> web.Response:
    """Body: {"storage": {...}, "metadataKey": "..."}. 200 with the drill's result (verified or
    not, and why); 502 when the store could not be read (the backup may still be good)."""
    agent = request.app[AGENT]
    try:
        body = await _json(request)
        key = _str(body, "metadataKey")
        if not key:
            raise ValueError("metadataKey is empty; give the key a backup returned")
        store = agent.store(body)
    except ValueError as exc:
        return _error(400, "InvalidRequest", str(exc))
    if agent.busy.locked():
        return _error(409, "Busy", "a backup or drill is running on this member; retry later")
    async with agent.busy:
        try:
            result = await run_drill(store, key, agent.settings.drill)
        except (StoreError, EtcdError) as exc:
            log.error("restore drill could not run", extra={"key": key, "error": str(exc)})
            return _error(502, _reason(exc), str(exc))
        except ValueError as exc:  # metadata that is not ours
            agent.metrics.drill("failed")
            return web.json_response(
                {"verified": False, "reason": "BadMetadata", "message": str(exc)}
            )
        finally:
            memory.give_back()
    agent.metrics.drill("verified" if result.verified else "failed")
    return web.json_response({_camel(k): v for k, v in asdict(result).items()})


async def _delete(request: web.Request) -> web.Response:
    """Body: {"storage": {...}, "metadataKey": "..."}. Deletes that backup's objects (its
    metadata first), only under this cluster's own directory; 200 with {"deleted": n}."""
    agent = request.app[AGENT]
    try:
        body = await _json(request)
        key = _str(body, "metadataKey")
        plan = agent.settings.plan
        prefix = _str(_object(body, "storage"), "prefix")
        backup = BackupKey.parse(prefix, plan.namespace, plan.cluster, key)
        store = agent.store(body)
    except ValueError as exc:
        return _error(400, "InvalidRequest", str(exc))
    try:
        deleted = await store.delete_backup(backup)
    except StoreError as exc:
        log.error("backup deletion failed", extra={"key": key, "error": str(exc)})
        return _error(502, exc.reason, str(exc))
    log.info("backup deleted", extra={"key": key, "objects": deleted})
    return web.json_response({"deleted": deleted})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return exc.reason
    if isinstance(exc, SnapshotCorrupt):
        return "SnapshotCorrupt"
    return "SnapshotFailed"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ValueError(f"the request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object (bucket, endpoint, region, ...)")
    return value


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    return value


def _error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"reason": reason, "message": message}}, status=status, headers=headers
    )
