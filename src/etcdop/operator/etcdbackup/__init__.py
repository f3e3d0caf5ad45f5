"""The EtcdBackup controller: one object, one backup taken by a member's agent."""

from etcdop.operator.etcdbackup.controller import ETCDBACKUPS, controller

__all__ = ["ETCDBACKUPS", "controller"]
