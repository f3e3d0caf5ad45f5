"""The operator's endpoint answers the chart's probes and serves its metrics on one port."""

from __future__ import annotations

import socket

import httpx

from etcdop.operator import endpoint, metrics  # noqa: F401  (registers the gauges)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_healthz_readyz_and_metrics_are_served_on_the_metrics_port() -> None:
    port = free_port()
    runner = await endpoint.serve("127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health, ready, text = [await http.get(p) for p in ("/healthz", "/readyz", "/metrics")]
            missing = await http.get("/nothing")
    finally:
        await runner.cleanup()
    assert (health.status_code, ready.status_code) == (200, 200)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "\netcdop_leader " in text.text  # the operator's own gauges, not only the process'
    assert missing.status_code == 404
