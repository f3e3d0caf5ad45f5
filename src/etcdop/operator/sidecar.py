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
from etcdop.operator.restorerequest import RestoreRequest

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


RESTORE_CONTAINER = "restore"
RESTORE_CREDENTIALS_VOLUME = "restore-credentials"


def restore_container(
    ec: EtcdCluster,
    image: str,
    req: RestoreRequest,
    *,
    member: str,
    peer_url: str,
    data_mount: str,
    data_dir: str,
) -> JSON:
    """The seed's first init container: `etcdop restore` downloads the snapshot, checks its
    sha256 and etcd's digest, and restores it into DATA_DIR before etcd (or the agent) starts.
    It runs in a pod only the operator creates, with the storage Secret mounted read-only."""
    secret = req.credentials_secret
    mounts: list[JSON] = [{"name": "data", "mountPath": data_mount}]
    if secret:
        volume = (
            "s3-credentials" if secret == credentials_secret(ec) else RESTORE_CREDENTIALS_VOLUME
        )
        mounts.append(
            {"name": volume, "mountPath": f"{CREDENTIALS_DIR}/{secret}", "readOnly": True}
        )
    args = [
        "restore",
        f"--metadata-key={req.metadata_key}",
        f"--sha256={req.sha256}",
        f"--bucket={req.bucket}",
        f"--endpoint={req.endpoint}",
        f"--region={req.region}",
        f"--credentials-secret={secret}",
        f"--s3-credentials-dir={CREDENTIALS_DIR}",
        f"--encryption={req.encryption}",
        f"--data-dir={data_dir}",
        f"--name={member}",
        f"--initial-cluster={member}={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster-token={ec.name}-{ec.uid}",
    ]
    if req.force_path_style:
        args.append("--force-path-style")
    return {
        "name": RESTORE_CONTAINER,
        "image": image,
        "args": args,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def restore_volumes(ec: EtcdCluster, req: RestoreRequest) -> list[JSON]:
    """The restore's storage Secret, when the members do not mount it already."""
    secret = req.credentials_secret
    if not secret or secret == credentials_secret(ec):
        return []
    return [
        {
            "name": RESTORE_CREDENTIALS_VOLUME,
            "secret": {"secretName": secret, "defaultMode": 0o440},
        }
    ]


def mounts_credentials(pod: JSON, secret: str) -> bool:
    """Whether POD (as read) mounts the storage Secret SECRET for its agent."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return any((v.get("secret") or {}).get("secretName") == secret for v in volumes)


def _field_env(name: str, path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
