"""Cluster DNS answers only for the cluster's zones: no `forward`, so no query leaves the host."""

from __future__ import annotations

from pathlib import Path

from e2e.localcluster.kubelet import dns


def test_corefile_serves_only_cluster_zones() -> None:
    text = dns.corefile(Path("/k/kubeconfig"), "10.213.0.1", 53, 8181)
    assert text.startswith("cluster.local:53 in-addr.arpa:53 {")
    assert "bind 10.213.0.1" in text and "kubeconfig /k/kubeconfig" in text
    assert "forward" not in text and "ready 127.0.0.1:8181" in text
