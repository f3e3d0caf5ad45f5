"""Uploads whose abort failed (the server was down when the upload failed) are kept here and
aborted again until they go, so an outage does not leave orphan parts billed forever."""

from __future__ import annotations

import asyncio
import logging
import time

from etcdop.objectstore.store import PendingAbort

log = logging.getLogger(__name__)


class AbortRetrier:
    """Holds pending aborts; `run` retries them every INTERVAL seconds for up to GIVE_UP."""

    def __init__(self, interval: float = 10.0, give_up: float = 24 * 3600.0) -> None:
        self._pending: dict[tuple[int, str, str], tuple[PendingAbort, float]] = {}
        self._interval = interval
        self._give_up = give_up
        self._wake = asyncio.Event()

    def add(self, pending: PendingAbort) -> None:
        self._pending[(id(pending.store), pending.key, pending.upload_id)] = (
            pending,
            time.monotonic(),
        )
        self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def retry(self) -> int:
        """Try every pending abort once; returns how many are still pending."""
        for ident, (pending, since) in list(self._pending.items()):
            store = pending.store
            if await store.abort(pending.key, pending.upload_id, retry=True):
                self._pending.pop(ident, None)
            elif time.monotonic() - since > self._give_up:
                self._pending.pop(ident, None)
                log.error(
                    "gave up aborting a multipart upload; abort it by hand",
                    extra={
                        "bucket": store.bucket,
                        "key": pending.key,
                        "upload_id": pending.upload_id,
                    },
                )
        return len(self._pending)

    async def run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self._interval)  # a retry period, not a synchronisation
            await self.retry()
