"""etcd release versions as the API accepts them: a full `MAJOR.MINOR.PATCH[-PRERELEASE]`.

A full version, not "3.6.x", because the operator must know the exact image tag to run and must
be able to compare what runs with what is asked for; a wildcard would change meaning over time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"
SUPPORTED_PATTERN = r"^3\.([5-9]|[1-9][0-9]+)\."
"""etcd 3.5 and newer 3.x: the releases with learners, MoveLeader and the downgrade-safe v3 API."""

_VERSION = re.compile(VERSION_PATTERN)
_SUPPORTED = re.compile(SUPPORTED_PATTERN)


@dataclass(frozen=True, order=True)
class EtcdVersion:
    """A parsed etcd version; orders as releases do (a pre-release before its release)."""

    major: int
    minor: int
    patch: int
    is_release: bool
    prerelease: str

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{self.prerelease}" if self.prerelease else base


def parse_version(text: str) -> EtcdVersion:
    """Parse "3.6.16" (an optional leading "v", as etcd reports it, is accepted)."""
    bare = text[1:] if text.startswith("v") else text
    if not _VERSION.match(bare):
        raise ValueError(f"{text!r} is not a full etcd version such as 3.6.16")
    core, _, pre = bare.partition("-")
    major, minor, patch = (int(p) for p in core.split("."))
    return EtcdVersion(major, minor, patch, is_release=not pre, prerelease=pre)


def is_full_version(text: str) -> bool:
    return _VERSION.match(text) is not None


def is_supported_version(text: str) -> bool:
    return _SUPPORTED.match(text) is not None


def cel_string(pattern: str) -> str:
    """A regular expression as a single-quoted CEL string literal."""
    return "'" + pattern.replace("\\", "\\\\").replace("'", "\\'") + "'"
