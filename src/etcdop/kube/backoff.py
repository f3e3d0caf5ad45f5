"""Exponential backoff with jitter, shared by reconnecting watches and retried requests."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays base, base*factor, ... capped at CAP, each spread by +/- JITTER so that many
    clients failing together do not come back together."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base or factor < 1 or not 0 <= jitter < 1:
            raise ValueError(
                f"Backoff(base={base}, cap={cap}, factor={factor}, jitter={jitter}): need "
                "0 < base <= cap, factor >= 1 and 0 <= jitter < 1"
            )
        self.base = base
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        raw = min(self.cap, self.base * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        spread = raw * self.jitter * (2 * self._rand() - 1)
        return max(0.0, min(self.cap, raw + spread))

    def reset(self) -> None:
        self.attempts = 0
