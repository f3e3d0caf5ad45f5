"""The real node (issue 8): upstream kubelet, containerd and runc, the default node of the local
cluster. `ETCDOP_NODE=imitation` selects the older node agent that runs pods as processes."""

from __future__ import annotations

import os

NODES = ("kubelet", "imitation")


def enabled() -> bool:
    """Whether `up` and the ``local_node`` fixture start real nodes (not the imitation)."""
    node = os.environ.get("ETCDOP_NODE", "") or "kubelet"
    if node not in NODES:
        raise SystemExit(f"ETCDOP_NODE={node!r}: use one of {', '.join(NODES)} (unset: kubelet)")
    return node == "kubelet"
