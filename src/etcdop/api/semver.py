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


# ---------------------------------------------------------------- version policy

MIN_PATCH_BEFORE_NEXT_MINOR = {(3, 5): 32}
"""The oldest patch release of a minor that may be upgraded to the next minor. etcd's "Upgrade
etcd from v3.5 to v3.6" guide: "make sure that all of your 3.5 members are updated to 3.5.32 or
later" (3.5.24-3.5.26 fix the "too many learner member" upgrade blocker, 3.5.32 the v2store
check). Earlier editions of the guide said 3.5.20, then 3.5.26: the newest word is kept."""


def change_refusal(running: str, target: str) -> str | None:
    """Why etcd cannot go from a member at RUNNING to TARGET directly, or None.

    etcd supports patch changes and one minor at a time (its upgrade policy), and a downgrade of
    one minor only through its downgrade API; a minor upgrade also needs a recent enough patch.
    """
    try:
        old, new = parse_version(running), parse_version(target)
    except ValueError:
        return None
    if old.major != new.major:
        return f"etcd cannot change major version ({old} to {new})"
    if new.minor > old.minor + 1:
        step = f"{old.major}.{old.minor + 1}"
        return (
            f"{old} to {new} skips a minor version, which etcd does not support; "
            f"upgrade to a {step}.x release first"
        )
    if new.minor < old.minor - 1:
        step = f"{old.major}.{old.minor - 1}"
        return (
            f"{old} to {new} downgrades by more than one minor version, which etcd does not "
            f"support; downgrade to a {step}.x release first"
        )
    least = MIN_PATCH_BEFORE_NEXT_MINOR.get((old.major, old.minor))
    if new.minor == old.minor + 1 and least is not None and old.patch < least:
        return (
            f"{old} to {new}: etcd requires every {old.major}.{old.minor} member to run "
            f"{old.major}.{old.minor}.{least} or later before {new.major}.{new.minor} (etcd's "
            f"upgrade guide); set spec.version to {old.major}.{old.minor}.{least} or a later "
            f"{old.major}.{old.minor}.x first"
        )
    return None


def same_minor(a: str, b: str) -> bool:
    try:
        x, y = parse_version(a), parse_version(b)
    except ValueError:
        return False
    return (x.major, x.minor) == (y.major, y.minor)
