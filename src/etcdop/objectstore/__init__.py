"""S3-compatible object storage over boto3: streaming upload/download and key layout."""

from etcdop.objectstore.aborts import AbortRetrier
from etcdop.objectstore.compression import COMPRESSIONS, compress, decompress
from etcdop.objectstore.config import ENCRYPTIONS, Credentials, StoreConfig
from etcdop.objectstore.errors import (
    BadCredentials,
    BucketMissing,
    ChecksumNotChecked,
    EndpointDown,
    HashMismatch,
    ObjectExists,
    ObjectMissing,
    SizeMismatch,
    StoreError,
    UploadTooLarge,
)
from etcdop.objectstore.keys import BackupKey, cluster_dir
from etcdop.objectstore.multipart import UploadResult
from etcdop.objectstore.parts import MIB, part_size_for, peak_buffer_bytes
from etcdop.objectstore.store import ObjectStore, PendingAbort

__all__ = [
    "COMPRESSIONS",
    "ENCRYPTIONS",
    "MIB",
    "AbortRetrier",
    "BackupKey",
    "BadCredentials",
    "BucketMissing",
    "ChecksumNotChecked",
    "Credentials",
    "EndpointDown",
    "HashMismatch",
    "ObjectExists",
    "ObjectMissing",
    "ObjectStore",
    "PendingAbort",
    "SizeMismatch",
    "StoreConfig",
    "StoreError",
    "UploadResult",
    "UploadTooLarge",
    "cluster_dir",
    "compress",
    "decompress",
    "part_size_for",
    "peak_buffer_bytes",
]
