"""The local cluster's nodes: the upstream kubelet with containerd and runc (issue 8)."""
