pytest_plugins = ["e2e.localcluster.fixtures"]
