"""The custom resources as typed Python: defaults, validation and CRD generation."""

from etcdop.api.etcdcluster import (
    API_VERSION,
    DEFAULT_IMAGE,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    EtcdCluster,
    EtcdClusterSpec,
    EtcdClusterStatus,
)
from etcdop.api.schema import FieldError, InvalidObject

__all__ = [
    "API_VERSION",
    "DEFAULT_IMAGE",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "EtcdCluster",
    "EtcdClusterSpec",
    "EtcdClusterStatus",
    "FieldError",
    "InvalidObject",
]
