"""`etcdop restore`: the first init container of a restore's seed pod, run before etcd starts.

It downloads the snapshot named by a backup's metadata, checks the object's sha256 (against the
metadata and against the one the operator checked) and etcd's own digest while it streams to
disk, and restores it with `etcdutl snapshot restore` as a new one-member cluster of this
member. The restore is made in a work directory on the data volume and renamed into place, so a
data directory holding `member/` is a finished restore: a restarted pod (or a repeated init
container) leaves it alone instead of throwing away what etcd has written since.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from etcdop import logs
from etcdop.agent.drill import DrillFailed, DrillTools, _command, _download
from etcdop.agent.metadata import BackupMetadata
from etcdop.objectstore import Credentials, ObjectStore, StoreConfig, StoreError

log = logging.getLogger(__name__)

TERMINATION_LOG = Path("/dev/termination-log")


@dataclass(frozen=True)
class SeedIdentity:
    """Who the restored member is: etcdutl writes this membership into the data."""

    name: str
    initial_cluster: str
    peer_url: str
    cluster_token: str


@dataclass(frozen=True)
class Restored:
    already: bool
    revision: int = 0
    snapshot_key: str = ""


async def restore_member(
    store: ObjectStore,
    metadata_key: str,
    expected_sha256: str,
    data_dir: Path,
    seed: SeedIdentity,
    tools: DrillTools,
) -> Restored:
    """Restore the backup at METADATA_KEY into DATA_DIR (nothing when it holds a member
    already); DrillFailed names what was wrong with the backup, StoreError the storage."""
    if (data_dir / "member").is_dir():
        log.info(
            "data directory holds a member already: not restored again",
            extra={"dataDir": str(data_dir)},
        )
        return Restored(already=True)
    meta = BackupMetadata.from_json(await store.get_json(metadata_key))
    if expected_sha256 and meta.sha256 != expected_sha256:
        raise DrillFailed(
            "HashMismatch",
            f"{metadata_key} now says sha256 {meta.sha256}, but the restore was checked with "
            f"{expected_sha256}: the backup changed since; create a new EtcdRestore",
        )
    work = data_dir.parent / ".etcdop-restore"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    snapshot = work / "snapshot.db"
    log.info("downloading snapshot", extra={"key": meta.snapshot_key, "bytes": meta.size})
    await _download(store, meta, snapshot)
    restored = work / "data"
    await _command(
        tools,
        [
            tools.etcdutl,
            "snapshot",
            "restore",
            str(snapshot),
            f"--data-dir={restored}",
            f"--name={seed.name}",
            f"--initial-cluster={seed.initial_cluster}",
            f"--initial-advertise-peer-urls={seed.peer_url}",
            f"--initial-cluster-token={seed.cluster_token}",
        ],
    )
    await anyio.to_thread.run_sync(_install, restored, data_dir, work)
    log.info(
        "snapshot restored",
        extra={"key": meta.snapshot_key, "revision": meta.revision, "dataDir": str(data_dir)},
    )
    return Restored(already=False, revision=meta.revision, snapshot_key=meta.snapshot_key)


def _install(restored: Path, data_dir: Path, work: Path) -> None:
    """Rename the restored directory into place (one rename: all or nothing)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)  # no member/ in it: an empty or unfinished directory
    os.rename(restored, data_dir)
    shutil.rmtree(work, ignore_errors=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata-key", required=True, help="key of the backup's metadata.json")
    p.add_argument("--sha256", default="", help="sha256 of the snapshot object, as checked")
    p.add_argument("--bucket", required=True)
    p.add_argument("--endpoint", default="", help="S3 endpoint URL (empty: AWS)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--force-path-style", action="store_true")
    p.add_argument("--encryption", default="", help='"", "SSE-S3" or "SSE-C"')
    p.add_argument("--credentials-secret", default="", help="subdirectory of the mounted Secret")
    p.add_argument("--s3-credentials-dir", type=Path, default=Path("/etc/etcdop/s3"))
    p.add_argument("--data-dir", type=Path, required=True, help="etcd's --data-dir")
    p.add_argument("--name", required=True, help="the seed member's name")
    p.add_argument("--initial-cluster", required=True)
    p.add_argument("--initial-advertise-peer-urls", required=True)
    p.add_argument("--initial-cluster-token", required=True)
    p.add_argument("--etcdutl", default="etcdutl")
    p.add_argument("--log-level", default="info")


def main(args: argparse.Namespace) -> int:
    logs.setup(args.log_level)
    try:
        config = StoreConfig(
            bucket=args.bucket,
            credentials=Credentials.from_dir(args.s3_credentials_dir, args.credentials_secret),
            endpoint=args.endpoint,
            region=args.region,
            force_path_style=args.force_path_style,
            encryption=args.encryption,
        )
        seed = SeedIdentity(
            args.name,
            args.initial_cluster,
            args.initial_advertise_peer_urls,
            args.initial_cluster_token,
        )
        tools = DrillTools(etcdutl=args.etcdutl)
        asyncio.run(
            restore_member(
                ObjectStore(config), args.metadata_key, args.sha256, args.data_dir, seed, tools
            )
        )
    except DrillFailed as exc:
        return _fail(f"{exc.reason}: {exc.message}")
    except StoreError as exc:
        return _fail(f"{exc.reason}: {exc}")
    except ValueError as exc:
        return _fail(f"InvalidBackup: {exc}")
    return 0


def _fail(message: str) -> int:
    """Say why in the log and the termination message (the operator shows it in status)."""
    log.error("restore failed", extra={"error": message})
    with contextlib.suppress(OSError):
        TERMINATION_LOG.write_text(message[:2048])
    print(message, file=sys.stderr)
    return 1
