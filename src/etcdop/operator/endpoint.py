"""The operator's HTTP endpoint: `/metrics` for Prometheus, `/healthz` and `/readyz` for probes.

Served on the event loop that reconciles, not on a thread beside it: a wedged loop then fails
the liveness probe instead of answering it. A standby replica (waiting for the lease) is healthy
and ready: it is there to take over.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def serve(address: str, port: int) -> web.AppRunner:
    """Start serving; the caller cleans the returned runner up on exit."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _ok)
    app.router.add_get("/readyz", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
