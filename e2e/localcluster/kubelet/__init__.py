"""The real node (issue 8): upstream kubelet, containerd and runc, behind ETCDOP_NODE=kubelet."""

from __future__ import annotations

import os


def enabled() -> bool:
    """Whether `up` and the ``local_node`` fixture start real nodes instead of the imitation."""
    return os.environ.get("ETCDOP_NODE", "") == "kubelet"
