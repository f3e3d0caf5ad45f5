"""An async facade over the etcd client, so the rest of etcdop never touches gRPC types.

The client library (etcd3aio, see docs/decisions.md) stays behind this package: results are the
dataclasses in `models`, failures the classes in `errors`.
"""

from etcdop.etcd.channel import TLSConfig
from etcdop.etcd.client import EtcdClient
from etcdop.etcd.errors import (
    DeadlineExceeded,
    EtcdError,
    LearnerNotReady,
    LearnerOnly,
    MemberNotFound,
    MembershipChangeRefused,
    NotALearner,
    NotLeader,
    RequestFailed,
    Unavailable,
)
from etcdop.etcd.models import Health, Member, MemberAdded, Status, initial_cluster

__all__ = [
    "DeadlineExceeded",
    "EtcdClient",
    "EtcdError",
    "Health",
    "LearnerNotReady",
    "LearnerOnly",
    "Member",
    "MemberAdded",
    "MemberNotFound",
    "MembershipChangeRefused",
    "NotALearner",
    "NotLeader",
    "RequestFailed",
    "Status",
    "TLSConfig",
    "Unavailable",
    "initial_cluster",
]
