"""Container probes (httpGet, tcpSocket, exec) with the kubelet's period and threshold rules.

The counting rules are pure (``ProbeCounter``); ``check`` is the one place that does I/O, always
towards the pod's own address (a network namespace the agent created) or into the container.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

ExecFn = Callable[[list[str], float], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class Probe:
    handler: Mapping[str, Any]  # the probe dict itself (httpGet / tcpSocket / exec / grpc)
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Probe | None:
        if not spec:
            return None
        return cls(
            handler=spec,
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            success_threshold=int(spec.get("successThreshold", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
        )


class ProbeCounter:
    """Consecutive results against thresholds; ``ok`` flips only when a threshold is reached.
    Readiness starts False; liveness and startup start as 'not failed'."""

    def __init__(self, probe: Probe, initial: bool) -> None:
        self.probe = probe
        self.ok = initial
        self._successes = 0
        self._failures = 0

    def observe(self, success: bool) -> bool:
        if success:
            self._successes += 1
            self._failures = 0
            if self._successes >= self.probe.success_threshold:
                self.ok = True
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= self.probe.failure_threshold:
                self.ok = False
        return self.ok

    @property
    def failed(self) -> bool:
        """Liveness/startup: the failure threshold was reached (the container must be killed)."""
        return self._failures >= self.probe.failure_threshold


def resolve_port(port: Any, container: Mapping[str, Any]) -> int:
    """A probe port is a number or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports", []) or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"probe port {port!r} names no port of container {container.get('name')!r}")


async def check(
    probe: Probe, container: Mapping[str, Any], pod_ip: str, exec_fn: ExecFn
) -> tuple[bool, str]:
    """Run one probe; (success, a message for events and logs)."""
    h = probe.handler
    try:
        if "exec" in h:
            argv = list(h["exec"].get("command", []))
            code, out = await exec_fn(argv, probe.timeout)
            return code == 0, f"exec {argv[:1]} exited with {code}: {out[-512:].strip()}"
        if "httpGet" in h:
            g = h["httpGet"]
            port = resolve_port(g.get("port"), container)
            host = g.get("host") or pod_ip
            scheme = str(g.get("scheme", "HTTP")).lower()
            path = g.get("path", "/") or "/"
            if not path.startswith("/"):
                path = "/" + path
            headers = {x["name"]: x["value"] for x in g.get("httpHeaders", []) or []}
            headers.setdefault("User-Agent", "kube-probe/local")
            async with httpx.AsyncClient(
                verify=False, trust_env=False, timeout=probe.timeout
            ) as client:
                r = await client.get(f"{scheme}://{host}:{port}{path}", headers=headers)
            return 200 <= r.status_code < 400, f"HTTP probe failed with statuscode: {r.status_code}"
        if "tcpSocket" in h:
            t = h["tcpSocket"]
            port = resolve_port(t.get("port"), container)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(t.get("host") or pod_ip, port), probe.timeout
            )
            writer.close()
            return True, ""
        if "grpc" in h:
            return False, "grpc probes are not supported by the local node; use httpGet"
    except (OSError, TimeoutError, httpx.HTTPError, ValueError) as e:
        return False, f"{type(e).__name__}: {e}"
    return False, "probe has no handler"
