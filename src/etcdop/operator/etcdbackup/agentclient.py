"""Calls to a member's backup agent over HTTP, with the cluster's token.

The token goes in the Authorization header only: it is never logged nor put in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from etcdop.api.etcdbackup import EtcdBackupSpec
from etcdop.operator.sidecar import AGENT_PORT


@dataclass(frozen=True)
class AgentReply:
    """What the agent answered: HTTP status and body; status 0 when it could not be reached."""

    status: int
    body: dict[str, Any]

    @property
    def reason(self) -> str:
        return str((self.body.get("error") or {}).get("reason", "")) or f"HTTP{self.status}"

    @property
    def message(self) -> str:
        return str((self.body.get("error") or {}).get("message", "")) or str(self.body)


def storage_body(spec: EtcdBackupSpec) -> dict[str, Any]:
    s = spec.storage
    return {
        "storage": {
            "bucket": s.bucket,
            "prefix": s.prefix,
            "endpoint": s.endpoint,
            "region": s.region,
            "forcePathStyle": s.force_path_style,
            "credentialsSecret": s.credentials_secret,
        },
        "encryption": spec.encryption,
    }


class AgentClient:
    """One call per method; TIMEOUT bounds a whole backup or drill (they stream a database)."""

    def __init__(self, *, timeout: float = 3600.0, connect_timeout: float = 5.0) -> None:
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)

    async def _post(self, ip: str, token: str, path: str, body: dict[str, Any]) -> AgentReply:
        url = f"http://{ip}:{AGENT_PORT}{path}"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                resp = await http.post(url, json=body, headers=headers)
        except httpx.HTTPError as e:
            return AgentReply(
                0,
                {
                    "error": {
                        "reason": "AgentUnreachable",
                        "message": (
                            f"the agent at {ip}:{AGENT_PORT} could not be reached: "
                            f"{type(e).__name__} {e}"
                        ),
                    }
                },
            )
        try:
            data = resp.json()
        except ValueError:
            data = {"error": {"reason": f"HTTP{resp.status_code}", "message": resp.text[:200]}}
        return AgentReply(resp.status_code, data if isinstance(data, dict) else {})

    async def backup(self, ip: str, token: str, spec: EtcdBackupSpec) -> AgentReply:
        body = {**storage_body(spec), "compression": spec.compression}
        return await self._post(ip, token, "/v1/backups", body)

    async def verify(self, ip: str, token: str, spec: EtcdBackupSpec, key: str) -> AgentReply:
        body = {**storage_body(spec), "metadataKey": key}
        return await self._post(ip, token, "/v1/verify", body)

    async def delete(self, ip: str, token: str, spec: EtcdBackupSpec, key: str) -> AgentReply:
        body = {**storage_body(spec), "metadataKey": key}
        return await self._post(ip, token, "/v1/backups/delete", body)
