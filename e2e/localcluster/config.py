"""Addresses and names the control plane, the nodes and the tests agree on."""

from __future__ import annotations

# Pods live on a bridge in the host's network namespace; every pod has a netns of its own.
BRIDGE_NAME = "etcdop0"
POD_CIDR = "10.213.0.0/16"
BRIDGE_IP = "10.213.0.1"  # the host's address on the bridge: pods reach the API server here
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
