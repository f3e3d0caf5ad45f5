"""The EtcdRestore controller: check a snapshot, then hand the cluster's reconciler a restore."""

from etcdop.operator.etcdrestore.controller import ETCDRESTORES, controller

__all__ = ["ETCDRESTORES", "controller"]
