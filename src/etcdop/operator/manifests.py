"""The Kubernetes objects an EtcdCluster owns, built as plain dicts (no I/O).

Members are Pods the operator owns directly (no StatefulSet): the planner, not a controller of
Kubernetes, decides when a member comes and goes. Each pod has a stable DNS name through the
headless peer Service, `<member>.<cluster>-peer.<namespace>.svc.<domain>`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from etcdop.api import API_VERSION, KIND, EtcdCluster
from etcdop.api.quantity import parse_quantity
from etcdop.operator import sidecar
from etcdop.operator.model import quorum
from etcdop.operator.restorerequest import LABEL_RESTORE, RestoreRequest

CLIENT_PORT = 2379
PEER_PORT = 2380
DATA_DIR = "/var/lib/etcd"
ETCD_CONTAINER = "etcd"

LABEL_CLUSTER = "etcdop.io/cluster"
LABEL_MEMBER = "etcdop.io/member"
LABEL_CLUSTER_UID = "etcdop.io/cluster-uid"
"""On claims: the uid of the EtcdCluster that made them, so that a later cluster of the same name
never takes an earlier one's data for its own."""
ANN_INITIAL_STATE = "etcdop.io/initial-cluster-state"
FORMED_TOLERATION = {"key": "etcdop.io/formed", "operator": "Exists", "effect": "NoSchedule"}
"""Added to the seed's pod after its `existing` annotation. An annotation does not change a pod's
generation; a new toleration (the least disruptive spec change a running pod allows, harmless
once bound) does, so the kubelet's status.observedGeneration says when it has the annotation
too: a container it restarts after that starts etcd as `existing`. It took 1-2 s here."""
ANN_VERSION = "etcdop.io/version"
ANN_POD_HASH = "etcdop.io/pod-hash"
"""A hash of the member pod as the spec renders it: a member whose pod hash differs is outdated
and replaced by the upgrade strategy, whatever changed (version, image, resources, template)."""
LABEL_SERVING = "etcdop.io/serving"
"""\"true\" while the member takes client traffic: the client Service selects on it, so the
operator takes a member out of the Service before removing or restarting it, and lets a new
member in only once it is a healthy voter (a learner refuses most client requests)."""
MANAGED_BY = "etcdop"
STATE_ENV = "INITIAL_CLUSTER_STATE"
RUN_AS = 65532
"""The uid and gid etcd runs as: the restricted Pod Security level forbids root."""

JSON = dict[str, Any]


def peer_service_name(cluster: str) -> str:
    return f"{cluster}-peer"


def client_service_name(cluster: str) -> str:
    return f"{cluster}-client"


def pdb_name(cluster: str) -> str:
    return f"{cluster}-quorum"


def member_host(ec: EtcdCluster, member: str, domain: str) -> str:
    return f"{member}.{peer_service_name(ec.name)}.{ec.namespace}.svc.{domain}"


def peer_url(ec: EtcdCluster, member: str, domain: str) -> str:
    return f"http://{member_host(ec, member, domain)}:{PEER_PORT}"


def client_url(ec: EtcdCluster, member: str, domain: str) -> str:
    return f"http://{member_host(ec, member, domain)}:{CLIENT_PORT}"


def selector_labels(ec: EtcdCluster) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "etcd",
        "app.kubernetes.io/instance": ec.name,
        LABEL_CLUSTER: ec.name,
    }


def common_labels(ec: EtcdCluster) -> dict[str, str]:
    return {**selector_labels(ec), "app.kubernetes.io/managed-by": MANAGED_BY}


def owner_reference(ec: EtcdCluster) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ec.name,
        "uid": ec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    ec: EtcdCluster, name: str, labels: dict[str, str] | None = None, owned: bool = True
) -> JSON:
    meta: JSON = {"name": name, "namespace": ec.namespace, "labels": labels or common_labels(ec)}
    if owned:
        meta["ownerReferences"] = [owner_reference(ec)]
    return meta


def peer_service(ec: EtcdCluster) -> JSON:
    """Headless, and listing pods before they are ready: members must find each other to be."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ec, peer_service_name(ec.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(ec),
            "ports": [
                {"name": "client", "port": CLIENT_PORT, "targetPort": CLIENT_PORT},
                {"name": "peer", "port": PEER_PORT, "targetPort": PEER_PORT},
            ],
        },
    }


def client_service(ec: EtcdCluster) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ec, client_service_name(ec.name)),
        "spec": {
            "selector": {**selector_labels(ec), LABEL_SERVING: "true"},
            "ports": [{"name": "client", "port": CLIENT_PORT, "targetPort": CLIENT_PORT}],
        },
    }


def pod_disruption_budget(ec: EtcdCluster) -> JSON:
    """Voluntary disruptions (drains) may take out at most the members quorum can spare."""
    tolerated = max(0, ec.spec.size - quorum(ec.spec.size))
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ec, pdb_name(ec.name)),
        "spec": {
            "maxUnavailable": tolerated,
            "selector": {"matchLabels": selector_labels(ec)},
        },
    }


def data_claim(ec: EtcdCluster, member: str) -> JSON | None:
    """The member's PersistentVolumeClaim, or None with emptyDir storage."""
    pvc = ec.spec.storage.persistent_volume_claim
    if pvc is None:
        return None
    spec: JSON = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": pvc.size}},
    }
    if pvc.storage_class_name:
        spec["storageClassName"] = pvc.storage_class_name
    labels = {**common_labels(ec), LABEL_MEMBER: member, LABEL_CLUSTER_UID: ec.uid}
    # Owned (and so garbage-collected with the cluster) only when the user asked for that.
    owned = pvc.when_deleted == "Delete"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(ec, member, labels, owned=owned),
        "spec": spec,
    }


def _default_affinity(ec: EtcdCluster) -> JSON:
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector_labels(ec)},
                    },
                }
            ]
        }
    }


def etcd_args(ec: EtcdCluster, member: str, initial_cluster: str, domain: str) -> list[str]:
    """The initial cluster state comes from the environment (`STATE_ENV`), read at each start."""
    quota = int(parse_quantity(ec.spec.backend_quota))
    return [
        f"--name={member}",
        f"--data-dir={DATA_DIR}/data",
        f"--listen-client-urls=http://0.0.0.0:{CLIENT_PORT}",
        f"--advertise-client-urls={client_url(ec, member, domain)}",
        f"--listen-peer-urls=http://0.0.0.0:{PEER_PORT}",
        f"--initial-advertise-peer-urls={peer_url(ec, member, domain)}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-state=$({STATE_ENV})",
        f"--initial-cluster-token={ec.name}-{ec.uid}",
        f"--quota-backend-bytes={quota}",
        f"--auto-compaction-mode={ec.spec.auto_compaction.mode}",
        f"--auto-compaction-retention={ec.spec.auto_compaction.retention}",
    ]


# ---------------------------------------------------------------- rollout marks (upgrade)


def member_pod(
    ec: EtcdCluster,
    member: str,
    initial_cluster: str,
    state: str,
    domain: str,
    serving: bool = False,
    *,
    agent_image: str = sidecar.DEFAULT_AGENT_IMAGE,
    restore: RestoreRequest | None = None,
) -> JSON:
    """The pod of one member, with the backup agent beside etcd; STATE is "new" only for the
    seed of a new cluster. SERVING puts it in the client Service at once (the planner does it
    later for a new member). With RESTORE, the seed of that restore: labelled with its uid, and
    restoring the snapshot into its data directory before anything else starts (not part of
    the pod hash: a seed is not outdated for having restored)."""
    pod = _member_pod(ec, member, initial_cluster, state, domain, agent_image=agent_image)
    pod["metadata"]["labels"][LABEL_SERVING] = "true" if serving else "false"
    pod["metadata"]["annotations"][ANN_POD_HASH] = pod_hash(ec, domain, agent_image=agent_image)
    if restore is not None:
        pod["metadata"]["labels"][LABEL_RESTORE] = restore.uid
        restorer = sidecar.restore_container(
            ec,
            agent_image,
            restore,
            member=member,
            peer_url=peer_url(ec, member, domain),
            data_mount=DATA_DIR,
            data_dir=f"{DATA_DIR}/data",
        )
        pod["spec"]["initContainers"].insert(0, restorer)
        pod["spec"]["volumes"].extend(sidecar.restore_volumes(ec, restore))
    return pod


def pod_hash(
    ec: EtcdCluster, domain: str, *, agent_image: str = sidecar.DEFAULT_AGENT_IMAGE
) -> str:
    """The hash of what every member's pod shares: rendered for a placeholder member, without
    what differs between members or changes during their life (name, initial cluster, state)."""
    pod = _member_pod(ec, "member", "", "existing", domain, agent_image=agent_image)
    pod["metadata"]["annotations"].pop(ANN_INITIAL_STATE, None)
    text = json.dumps(pod, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------


def _member_pod(
    ec: EtcdCluster,
    member: str,
    initial_cluster: str,
    state: str,
    domain: str,
    *,
    agent_image: str,
) -> JSON:
    tmpl = ec.spec.pod_template
    labels = {**tmpl.labels, **common_labels(ec), LABEL_MEMBER: member}
    annotations = {
        **tmpl.annotations,
        ANN_INITIAL_STATE: state,
        ANN_VERSION: ec.spec.version,
    }
    container: JSON = {
        "name": ETCD_CONTAINER,
        "image": ec.spec.image_ref,
        "command": ["etcd"],
        "args": etcd_args(ec, member, initial_cluster, domain),
        "env": [
            # A panic then ends with its message, not a goroutine dump: the message (etcd's
            # evidence of unusable data) must fit in the 2 KiB the kubelet keeps of the log.
            {"name": "GOTRACEBACK", "value": "none"},
            {
                # Read anew at every container start: the operator turns the seed's "new" into
                # "existing" once the cluster has formed, so a seed restarted on an emptied data
                # directory fails instead of founding a second cluster.
                "name": STATE_ENV,
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{ANN_INITIAL_STATE}']"}
                },
            },
        ],
        # etcd's fatal error (the evidence that a member's data is unusable) reaches the status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "ports": [
            {"name": "client", "containerPort": CLIENT_PORT},
            {"name": "peer", "containerPort": PEER_PORT},
        ],
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": CLIENT_PORT},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": CLIENT_PORT},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
    if ec.spec.resources:
        container["resources"] = dict(ec.spec.resources)
    storage = ec.spec.storage
    volume: JSON
    if storage.persistent_volume_claim is not None:
        volume = {"name": "data", "persistentVolumeClaim": {"claimName": member}}
    else:
        empty: JSON = {}
        if storage.empty_dir is not None:
            if storage.empty_dir.medium:
                empty["medium"] = storage.empty_dir.medium
            if storage.empty_dir.size_limit:
                empty["sizeLimit"] = storage.empty_dir.size_limit
        volume = {"name": "data", "emptyDir": empty}
    spec: JSON = {
        "hostname": member,
        "subdomain": peer_service_name(ec.name),
        # Every member restarts in place on its data, the seed too: see STATE_ENV.
        "restartPolicy": "Always",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        # Neither etcd nor the agent talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "initContainers": [sidecar.agent_container(ec, agent_image, CLIENT_PORT)],
        "containers": [container],
        "volumes": [volume, *sidecar.agent_volumes(ec)],
        "affinity": dict(tmpl.affinity) if tmpl.affinity else _default_affinity(ec),
    }
    if tmpl.node_selector:
        spec["nodeSelector"] = dict(tmpl.node_selector)
    if tmpl.tolerations:
        spec["tolerations"] = [dict(t) for t in tmpl.tolerations]
    if tmpl.priority_class_name:
        spec["priorityClassName"] = tmpl.priority_class_name
    meta = _metadata(ec, member, labels)
    meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
