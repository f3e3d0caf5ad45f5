"""The EtcdRestore resource."""

from __future__ import annotations

from etcdop.api.etcdcluster import GROUP, VERSION
from etcdop.api.etcdrestore import KIND, PLURAL
from etcdop.kube.client import Resource

ETCDRESTORES = Resource(GROUP, VERSION, PLURAL, KIND)
