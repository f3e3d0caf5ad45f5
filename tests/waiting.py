"""Waiting on conditions, never on the clock: the one polling helper every test uses."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], within: float, what: str, every: float = 0.25
) -> None:
    """Poll CHECK until it is true; fail naming WHAT after WITHIN seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except AssertionError as e:  # a check may assert to explain what is missing
            last_error = e
        if loop.time() > deadline:
            detail = f" (last: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {within}s waiting for {what}{detail}")
        await asyncio.sleep(every)
