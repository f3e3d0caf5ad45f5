"""An async facade over the etcd client, so the rest of etcdop never touches gRPC types."""
