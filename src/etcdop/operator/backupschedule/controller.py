"""The schedule controller's registration. A controller of its own over EtcdClusters, not a job
of the cluster reconciler: its timing follows the cron schedule, not membership, and a slow
membership step (or a long backup wait) never delays the other."""

from __future__ import annotations

from etcdop.kube.client import KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.kube.manager import Controller, Manager, owns
from etcdop.operator.backupschedule.reconciler import ScheduleReconciler
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS


def controller(mgr: Manager, kube: KubeClient, recorder: EventRecorder) -> Controller:
    reconciler = ScheduleReconciler(mgr.store(ETCDCLUSTERS), mgr.store(ETCDBACKUPS), kube, recorder)
    return Controller(
        name="backupschedule",
        primary=ETCDCLUSTERS,
        reconcile=reconciler.reconcile,
        owns=[owns(ETCDBACKUPS, owner=ETCDCLUSTERS)],
        workers=1,
    )
