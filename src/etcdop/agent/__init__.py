"""The sidecar agent: backup and restore of its local etcd member."""
