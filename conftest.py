pytest_plugins = ["e2e.localcluster.fixtures", "e2e.localcluster.kubelet.fixtures"]
