"""The local node: a kubelet of our own that runs Pods as local processes (issue 3)."""
