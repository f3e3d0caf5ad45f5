"""The local node's API client: a connection cut by the server is an OSError to its callers.

Every caller in the node retries OSError; an httpx error used to escape them and killed a pod's
status writer, so a pod restarted by a node reboot was never reported again (a CI failure)."""

from __future__ import annotations

import asyncio

import kr8s.asyncio
import pytest

from e2e.localcluster.kubeapi import Kube


async def test_a_connection_reset_is_raised_as_an_oserror() -> None:
    version = b'{"major": "1", "minor": "33", "gitVersion": "v1.33.0"}'

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the client's /version check, then cut every later request off."""
        while line := await reader.readline():
            if line.startswith(b"GET /version"):
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(version), version))
                await writer.drain()
            else:
                break
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        api = await kr8s.asyncio.api(url=f"http://127.0.0.1:{port}")
        with pytest.raises(OSError, match="PATCH /api/v1/namespaces/ns/pods/p/status"):
            await Kube(api).merge_patch("/api/v1/namespaces/ns/pods/p/status", {"status": {}})
