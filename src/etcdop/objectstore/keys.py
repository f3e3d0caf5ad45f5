"""Where a backup lives: `<prefix>/<namespace>/<cluster>/<UTC timestamp>-<revision>/...`.

The timestamp is fixed-width, to the millisecond (`20261127T031500.250Z`), so plain key order is
time order. Whole seconds were not enough: two EtcdBackups sent to two members at once, with no
write between them, got the same second and revision, and the second was refused as an existing
object. One agent runs one backup at a time, so its keys never repeat; two agents would need the
same millisecond and revision. Keys written with whole seconds (`20261127T031500Z`) still parse
and keep their name; beside millisecond keys of the same second they sort last by name ('.'
comes before 'Z'), so lists are sorted by `BackupKey.order`, not by name.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

SNAPSHOT = "snapshot.db"
METADATA = "metadata.json"
_STAMP = "%Y%m%dT%H%M%S"
_REVISION_WIDTH = 19  # an int64 revision never needs more digits
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a Kubernetes object name
_DIR = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{3}))?Z-(\d{19})$")


@dataclass(frozen=True)
class BackupKey:
    """The keys of one backup's objects."""

    prefix: str
    namespace: str
    cluster: str
    taken_at: dt.datetime
    revision: int
    whole_seconds: bool = False  # named as before millisecond stamps (a parsed older key)

    def __post_init__(self) -> None:
        for field, value in (("namespace", self.namespace), ("cluster", self.cluster)):
            if not _NAME.match(value):
                raise ValueError(f"backup key: {field} {value!r} is not a Kubernetes object name")
        if self.revision < 0:
            raise ValueError(f"backup key: revision {self.revision} is negative")
        if self.taken_at.tzinfo is None:
            raise ValueError("backup key: taken_at must be timezone-aware (UTC)")
        if any(part in ("", ".", "..") for part in self.prefix.split("/")) and self.prefix:
            raise ValueError(f"backup key: prefix {self.prefix!r} has an empty or dot segment")
        t = self.taken_at.astimezone(dt.UTC)
        kept = 0 if self.whole_seconds else t.microsecond // 1000 * 1000
        object.__setattr__(self, "taken_at", t.replace(microsecond=kept))  # what the name holds

    @property
    def order(self) -> tuple[dt.datetime, int]:
        """Time order, then revision: true for keys of either naming."""
        return (self.taken_at, self.revision)

    @property
    def cluster_dir(self) -> str:
        return cluster_dir(self.prefix, self.namespace, self.cluster)

    @property
    def dir(self) -> str:
        stamp = self.taken_at.strftime(_STAMP)
        if not self.whole_seconds:
            stamp += f".{self.taken_at.microsecond // 1000:03d}"
        return f"{self.cluster_dir}{stamp}Z-{self.revision:0{_REVISION_WIDTH}d}/"

    def snapshot(self, compression: str = "") -> str:
        """The snapshot object's key; `.zst` when compressed with zstd."""
        suffix = {"": "", "zstd": ".zst"}.get(compression)
        if suffix is None:
            raise ValueError(f"backup key: unknown compression {compression!r} (use '' or 'zstd')")
        return f"{self.dir}{SNAPSHOT}{suffix}"

    @property
    def metadata(self) -> str:
        return f"{self.dir}{METADATA}"

    @classmethod
    def parse(cls, prefix: str, namespace: str, cluster: str, key: str) -> BackupKey:
        """The BackupKey of any object KEY under one cluster's directory."""
        base = cluster_dir(prefix, namespace, cluster)
        if not key.startswith(base):
            raise ValueError(f"backup key: {key!r} is not under {base!r}")
        match = _DIR.match(key[len(base) :].split("/", 1)[0])
        if match is None:
            raise ValueError(f"backup key: {key!r} has no '<timestamp>-<revision>' directory")
        taken = dt.datetime.strptime(match.group(1), _STAMP).replace(tzinfo=dt.UTC)
        millis = match.group(2)
        if millis is not None:
            taken = taken.replace(microsecond=int(millis) * 1000)
        return cls(prefix, namespace, cluster, taken, int(match.group(3)), millis is None)


def cluster_dir(prefix: str, namespace: str, cluster: str) -> str:
    """`<prefix>/<namespace>/<cluster>/`: the directory listing and retention work on."""
    head = prefix.strip("/")
    return f"{head}/{namespace}/{cluster}/" if head else f"{namespace}/{cluster}/"
