"""A real Kubernetes control plane and real nodes (kubelet, containerd, runc), run on this
machine for the tests and the demo."""
