"""etcdop: run etcd on Kubernetes with no manual operations."""

__version__ = "0.1.0"
