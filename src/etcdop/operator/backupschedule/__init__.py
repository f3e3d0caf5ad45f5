"""Scheduled backups of EtcdClusters: EtcdBackups made on a cron schedule, pruned by retention."""

from etcdop.operator.backupschedule.controller import controller

__all__ = ["controller"]
