"""A real Kubernetes control plane (and, later, a node agent) run as local processes for tests."""
