"""Durations as Kubernetes and Go write them (`90s`, `5m`, `1h30m`)."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def is_duration(text: str) -> bool:
    return re.match(DURATION_PATTERN, text) is not None


def parse_duration(text: str) -> float:
    """Seconds in TEXT such as "5m" or "1m30s"; ValueError names the text otherwise."""
    if not is_duration(text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 5m or 1h30m")
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
