"""The backup agent as a native sidecar of each member pod (no I/O).

An init container with `restartPolicy: Always` starts before etcd and runs beside it. It gets no
Kubernetes credentials: the operator calls it over HTTP on the pod IP with the cluster's token
(mounted from the token Secret), and S3 credentials come from the storage Secret mounted under
/etc/etcdop/s3/<secret name> (docs/decisions.md).
"""

from __future__ import annotations

from typing import Any

from etcdop import __version__
from etcdop.api import EtcdCluster

JSON = dict[str, Any]

AGENT_CONTAINER = "backup-agent"
AGENT_PORT = 8081
DEFAULT_AGENT_IMAGE = f"ghcr.io/etcdop/etcdop:{__version__}"
"""The operator's own image: one package, two deployables (the Dockerfile ships etcd tools)."""
TOKEN_KEY = "token"
TOKEN_DIR = "/etc/etcdop/token"
CREDENTIALS_DIR = "/etc/etcdop/s3"
SCRATCH_DIR = "/scratch"
"""Where the restore drill restores a backup: an emptyDir, as the root filesystem is read-only."""


def token_secret_name(cluster: str) -> str:
    return f"{cluster}-agent-token"


def credentials_secret(ec: EtcdCluster) -> str | None:
    """The storage Secret the members mount: the one spec.backup.storage names, if any."""
    return ec.spec.backup.storage.credentials_secret if ec.spec.backup else None


def agent_container(ec: EtcdCluster, image: str, client_port: int) -> JSON:
    mounts: list[JSON] = [
        {"name": "agent-token", "mountPath": TOKEN_DIR, "readOnly": True},
        {"name": "agent-scratch", "mountPath": SCRATCH_DIR},
    ]
    secret = credentials_secret(ec)
    if secret:
        mounts.append(
            {"name": "s3-credentials", "mountPath": f"{CREDENTIALS_DIR}/{secret}", "readOnly": True}
        )
    return {
        "name": AGENT_CONTAINER,
        "image": image,
        "restartPolicy": "Always",  # a native sidecar: runs beside etcd for the pod's life
        "args": [
            "agent",
            f"--port={AGENT_PORT}",
            f"--etcd-endpoint=http://127.0.0.1:{client_port}",
            f"--token-file={TOKEN_DIR}/{TOKEN_KEY}",
            f"--s3-credentials-dir={CREDENTIALS_DIR}",
            f"--scratch-dir={SCRATCH_DIR}",
        ],
        "env": [
            _field_env("POD_IP", "status.podIP"),
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            {"name": "ETCDOP_CLUSTER", "value": ec.name},
        ],
        "ports": [{"name": "agent", "containerPort": AGENT_PORT}],
        # Every HTTP route needs the token, so probes look at the socket only.
        "livenessProbe": {
            "tcpSocket": {"port": AGENT_PORT},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def agent_volumes(ec: EtcdCluster) -> list[JSON]:
    volumes: list[JSON] = [
        {
            "name": "agent-token",
            "secret": {"secretName": token_secret_name(ec.name), "defaultMode": 0o440},
        },
        {"name": "agent-scratch", "emptyDir": {}},
    ]
    secret = credentials_secret(ec)
    if secret:
        volumes.append(
            {"name": "s3-credentials", "secret": {"secretName": secret, "defaultMode": 0o440}}
        )
    return volumes


def mounts_credentials(pod: JSON, secret: str) -> bool:
    """Whether POD (as read) mounts the storage Secret SECRET for its agent."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return any((v.get("secret") or {}).get("secretName") == secret for v in volumes)


def _field_env(name: str, path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
