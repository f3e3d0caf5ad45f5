"""Where backups go and when they are taken: shared by EtcdBackup.spec and EtcdCluster.spec.backup.

The docstrings and `prop` descriptions become the CRDs' OpenAPI descriptions.
"""

from __future__ import annotations

import datetime as dt
import re

from croniter import croniter

from etcdop.api.schema import FieldError, Rule, api_type, prop
from etcdop.api.semver import cel_string

SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_NAME_RULE = Rule(
    cel=f"self.matches({cel_string(SECRET_NAME_PATTERN)})",
    message="must be the name of a Secret in the cluster's namespace",
    check=lambda v: re.match(SECRET_NAME_PATTERN, v) is not None,
)
DURATION_PATTERN = r"^([0-9]+[smhd])+$"
DURATION_RULE = Rule(
    cel=f"self.matches({cel_string(DURATION_PATTERN)})",
    message="must be a duration such as 168h, 7d or 1h30m (units s, m, h, d)",
    check=lambda v: re.match(DURATION_PATTERN, v) is not None,
)
CRON_FIELDS_PATTERN = (
    r"^(@(hourly|daily|weekly|monthly|yearly|annually|midnight)|[^ ]+( +[^ ]+){4})$"
)
SCHEDULE_RULE = Rule(
    cel=f"self.matches({cel_string(CRON_FIELDS_PATTERN)})",
    message="must be a cron schedule of 5 fields such as '0 3 * * *' (or @hourly, @daily, ...)",
    check=lambda v: re.match(CRON_FIELDS_PATTERN, v) is not None and croniter.is_valid(v),
)
COMPRESSIONS = ("", "zstd")
ENCRYPTIONS = ("", "SSE-S3", "SSE-C")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """`168h`, `7d`, `1h30m` as a timedelta; ValueError naming the text otherwise."""
    if not re.match(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 168h, 7d or 1h30m")
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)([smhd])", text))
    return dt.timedelta(seconds=seconds)


@api_type
class BackupStorage:
    """An S3-compatible bucket. Credentials never appear here: they are read by the backup agent
    from the named Secret, which the member pods mount (see credentialsSecret)."""

    bucket: str = prop("The bucket backups are written to; it must exist.", max_length=63)
    prefix: str = prop(
        "Key prefix; objects go to <prefix>/<namespace>/<cluster>/<UTC time>-<revision>/.",
        default="",
        max_length=512,
    )
    endpoint: str = prop(
        "S3 endpoint URL such as https://minio.example:9000; empty for AWS S3 in region.",
        default="",
        max_length=512,
    )
    region: str = prop("Region of the bucket.", default="us-east-1", max_length=64)
    force_path_style: bool = prop(
        "Address the bucket as <endpoint>/<bucket> rather than <bucket>.<endpoint> (MinIO, "
        "versitygw and most non-AWS servers need true).",
        default=False,
    )
    credentials_secret: str = prop(
        "Secret in the cluster's namespace with the keys accessKeyId and secretAccessKey (and "
        "sseCustomerKey, base64 of 32 bytes, for SSE-C). Member pods mount the Secret named in "
        "the EtcdCluster's spec.backup.storage; an EtcdBackup must name that same Secret.",
        max_length=253,
        rules=(SECRET_NAME_RULE,),
    )


@api_type
class Retention:
    """Which scheduled backups to keep; older ones are deleted with their objects. The newest
    successful backup is never deleted by retention."""

    keep_last: int | None = prop(
        "Keep at most this many successful scheduled backups (1 to 1000).",
        default=None,
        rules=(
            Rule(
                cel="self >= 1 && self <= 1000",
                message="must be between 1 and 1000",
                check=lambda v: 1 <= v <= 1000,
            ),
        ),
    )
    max_age: str | None = prop(
        "Delete scheduled backups older than this duration, such as 168h or 30d.",
        default=None,
        max_length=32,
        rules=(DURATION_RULE,),
    )


@api_type
class ClusterBackup:
    """Backups of this cluster: where they go and, with a schedule, when they are taken. The
    member pods mount storage.credentialsSecret, so ad-hoc EtcdBackups can use it as well."""

    storage: BackupStorage = prop("Where backups go.")
    schedule: str | None = prop(
        "Cron schedule (UTC) of backups, such as '0 */6 * * *'. A schedule missed while the "
        "operator was down runs once when it is back, not once per missed time. Unset: no "
        "scheduled backups, only EtcdBackups you create.",
        default=None,
        max_length=128,
        rules=(SCHEDULE_RULE,),
    )
    retention: Retention = prop(
        "Which scheduled backups to keep (all when unset).", default_factory=Retention
    )
    verify: bool = prop(
        "Run the restore drill after each scheduled backup: the agent downloads it, restores it "
        "with etcdutl into a scratch directory and compares revision and key count.",
        default=True,
        schema_default=True,
    )
    compression: str = prop(
        'Compression of scheduled backups: "" (none) or "zstd".', default="", enum=COMPRESSIONS
    )
    encryption: str = prop(
        'Server-side encryption of scheduled backups: "", "SSE-S3" or "SSE-C".',
        default="",
        enum=ENCRYPTIONS,
    )


@api_type
class RestoreSource:
    """The snapshot to restore: an EtcdBackup by name, or storage plus the key of a backup's
    metadata.json (or of its snapshot object, whose metadata.json lies beside it)."""

    backup_name: str = prop(
        "Name of a Succeeded EtcdBackup in this namespace.", default="", max_length=253
    )
    storage: BackupStorage | None = prop(
        "Where the backup is, when it is not named by backupName.", default=None
    )
    key: str = prop(
        "Key of the backup's metadata.json (or of its snapshot) in storage.bucket.",
        default="",
        max_length=1024,
    )


def source_errors(src: RestoreSource, path: str) -> list[FieldError]:
    """What makes SRC name no snapshot, or two (the schema cannot say "exactly one of")."""
    by_backup = bool(src.backup_name)
    by_key = src.storage is not None or bool(src.key)
    if by_backup == by_key:
        return [
            FieldError(path, "give either backupName, or storage and key (not both, not neither)")
        ]
    if by_key and (src.storage is None or not src.key):
        return [FieldError(path, "storage and key go together: give both")]
    return []
