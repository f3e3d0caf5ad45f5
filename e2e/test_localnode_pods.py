"""The local node runs real Pods: Deployments, DNS, graceful deletion, sidecars, probes, PVCs.

Everything here talks to the real control plane (fixture ``control_plane``) and the node agent
(fixture ``local_node``); pods are local processes in network namespaces of their own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.node.fixtures import LocalNode
from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.testing import (
    condition,
    container_status,
    create,
    delete_namespace,
    eventually,
    http_get,
    new_namespace,
    pid_alive,
    pod,
    wait_gone,
    wait_pod,
    wait_ready,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.imitation]


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> Kube:
    return Kube(kube_api)


@pytest.fixture
async def ns(kube: Kube, local_node: LocalNode) -> AsyncIterator[str]:
    name = await new_namespace(kube, "node")
    yield name
    await delete_namespace(kube, name)


def web_container(image: str, **extra: Any) -> dict[str, Any]:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    env += extra.pop("env", [])
    return {"name": "web", "image": image, "env": env,
            "ports": [{"name": "http", "containerPort": 8080}], **extra}


def deployment(ns: str, image: str, replicas: int = 2, **container: Any) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 3,
                    "containers": [web_container(
                        image, readinessProbe={"httpGet": {"path": "/ready", "port": "http"},
                                               "periodSeconds": 1},
                        **container)],
                },
            },
        },
    }


def headless_service(ns: str, name: str, selector: dict[str, str], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": "None", "selector": selector, "publishNotReadyAddresses": False,
                 "ports": [{"name": "p", "port": port}]},
    }


async def web_pods(kube: Kube, ns: str) -> list[dict[str, Any]]:
    out = await kube.get(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")
    assert out is not None
    return [p for p in out["items"] if not p["metadata"].get("deletionTimestamp")]


async def deployment_available(kube: Kube, ns: str, replicas: int) -> bool:
    d = await kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    return bool(d and condition(d, "Available") == "True"
                and d["status"].get("readyReplicas") == replicas
                and d["status"].get("updatedReplicas") == replicas)


async def test_deployment_becomes_available_and_pods_reach_each_other_by_dns(
        kube: Kube, ns: str, web_image: str) -> None:
    await create(kube, deployment(ns, web_image))
    await create(kube, headless_service(ns, "web", {"app": "web"}, 8080))
    await eventually(lambda: deployment_available(kube, ns, 2), 90, "deployment web Available")

    pods = await web_pods(kube, ns)
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2, ips
    assert all(ip and not ip.startswith("127.") for ip in ips), ips
    assert {p["spec"]["nodeName"] for p in pods} <= {"local-0", "local-1", "local-2"}

    a, b = pods
    a_ip, b_ip = a["status"]["podIP"], b["status"]["podIP"]
    # The host reaches pod A; inside A, the service name resolves to both pods (cluster DNS) ...
    svc = f"web.{ns}.svc.cluster.local"

    async def resolved() -> list[str] | None:
        r = await http_get(f"http://{a_ip}:8080/resolve?name={svc}")
        got = sorted(json.loads(r.text)) if r.status_code == 200 else None
        return got if got == sorted(ips) else None

    await eventually(resolved, 30, f"{svc} to resolve to {sorted(ips)} inside pod A")
    # ... and A fetches B by B's own DNS name (headless-service record of B's address).
    b_name = f"{b_ip.replace('.', '-')}.web.{ns}.svc.cluster.local"
    r = await http_get(f"http://{a_ip}:8080/fetch?url=http://{b_name}:8080/")
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["pod"] == b["metadata"]["name"]


async def test_deleting_a_pod_kills_it_within_grace_and_replicaset_replaces_it(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    # The server ignores SIGTERM: only the SIGKILL at the end of the grace period stops it.
    await create(kube, deployment(ns, web_image,
                                  env=[{"name": "IGNORE_SIGTERM", "value": "1"}]))
    await eventually(lambda: deployment_available(kube, ns, 2), 90, "deployment web Available")
    victim = (await web_pods(kube, ns))[0]
    name = victim["metadata"]["name"]
    pid = local_node.pod_info(ns, name)["pids"]["web"]
    assert pid_alive(pid)

    t0 = time.monotonic()
    await kube.delete(f"/api/v1/namespaces/{ns}/pods/{name}",
                      {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 3})
    await wait_gone(kube, f"/api/v1/namespaces/{ns}/pods/{name}", 30)
    elapsed = time.monotonic() - t0
    assert not pid_alive(pid), f"pid {pid} of deleted pod {name} still runs"
    assert elapsed >= 2.5, f"pod {name} went away after {elapsed:.1f}s, before its grace period"

    await eventually(lambda: deployment_available(kube, ns, 2), 60, "a replacement pod")
    names = {p["metadata"]["name"] for p in await web_pods(kube, ns)}
    assert name not in names and len(names) == 2


async def test_native_sidecar_starts_before_the_main_container(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    # The sidecar marks a shared volume after a second; its startupProbe waits for the mark, so
    # the main container must find the mark when it starts.
    sidecar = {
        "name": "side", "image": web_image, "restartPolicy": "Always",
        "command": ["/bin/sh", "-c", "sleep 1; touch /shared/sidecar-up; exec sleep 3600"],
        "startupProbe": {"exec": {"command": ["test", "-f", "/shared/sidecar-up"]},
                         "periodSeconds": 1, "failureThreshold": 30},
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    main = {
        "name": "main", "image": web_image,
        "command": ["/bin/sh", "-c",
                    "if test -f /shared/sidecar-up; then echo sidecar-first; "
                    "else echo sidecar-missing; fi; exec sleep 3600"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sc", "namespace": ns},
        "spec": {"terminationGracePeriodSeconds": 1, "initContainers": [sidecar],
                 "containers": [main], "volumes": [{"name": "shared", "emptyDir": {}}]},
    })
    p = await wait_ready(kube, ns, "sc", 60)
    side = container_status(p, "side", init=True)
    assert side["started"] is True and "running" in side["state"]
    main_started = container_status(p, "main")["state"]["running"]["startedAt"]
    assert side["state"]["running"]["startedAt"] <= main_started
    async def main_log() -> str:
        return local_node.pod_logs(ns, "sc", "main")

    assert (await eventually(main_log, 10, "main container's log")).strip() == "sidecar-first"


async def test_failing_readiness_probe_keeps_the_pod_unready(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    # /ready answers 503 until READY_FILE exists in the pod's emptyDir.
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unready", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [web_container(
                web_image, env=[{"name": "READY_FILE", "value": "/flags/ready"}],
                readinessProbe={"httpGet": {"path": "/ready", "port": 8080},
                                "periodSeconds": 1, "failureThreshold": 1},
                volumeMounts=[{"name": "flags", "mountPath": "/flags"}])],
            "volumes": [{"name": "flags", "emptyDir": {}}],
        },
    })

    async def probed_five_times() -> bool:
        log = local_node.pod_logs(ns, "unready", "web")
        return log.count("GET /ready") >= 5

    await eventually(probed_five_times, 60, "five readiness probes of pod unready")
    p = await pod(kube, ns, "unready")
    assert p is not None
    assert p["status"]["phase"] == "Running"
    assert condition(p, "Ready") == "False"
    assert condition(p, "ContainersReady") == "False"
    assert container_status(p, "web")["ready"] is False

    # The probe, not anything else, was the cause: once it passes, the pod becomes Ready.
    flags = Path(local_node.pod_info(ns, "unready")["volumes"]["flags"])
    (flags / "ready").touch()
    await wait_ready(kube, ns, "unready", 30)


async def test_pvc_data_survives_pod_deletion_and_recreation(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    await create(kube, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    token = uuid.uuid4().hex

    def one_shot(name: str, script: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": web_image,
                                "command": ["/bin/sh", "-c", script],
                                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        }

    def succeeded(p: dict[str, Any]) -> bool:
        return bool(p["status"].get("phase") == "Succeeded")

    await create(kube, one_shot("writer", f"echo {token} > /data/token"))
    await wait_pod(kube, ns, "writer", succeeded, 90, "Succeeded")
    await kube.delete(f"/api/v1/namespaces/{ns}/pods/writer")
    await wait_gone(kube, f"/api/v1/namespaces/{ns}/pods/writer", 30)

    await create(kube, one_shot("writer", "cat /data/token"))
    await wait_pod(kube, ns, "writer", succeeded, 90, "Succeeded")
    assert local_node.pod_logs(ns, "writer", "c").strip() == token

    pvc = await kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    assert pvc is not None and pvc["spec"]["storageClassName"] == "local"
    pv_name = pvc["spec"]["volumeName"]
    pv = await kube.get(f"/api/v1/persistentvolumes/{pv_name}")
    assert pv is not None
    pv_dir = Path(pv["spec"]["hostPath"]["path"])
    assert (pv_dir / "token").read_text().strip() == token

    # Reclaim policy Delete: once the claim is gone, so are the volume and its directory.
    await kube.delete(f"/api/v1/namespaces/{ns}/pods/writer")
    await wait_gone(kube, f"/api/v1/namespaces/{ns}/pods/writer", 30)
    await kube.delete(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    await wait_gone(kube, f"/api/v1/persistentvolumes/{pv_name}", 60)
    assert not await asyncio.to_thread(pv_dir.exists)


async def test_unmapped_image_waits_with_err_image_pull(kube: Kube, ns: str,
                                                        local_node: LocalNode) -> None:
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/nothing:0"}]},
    })

    def pull_error(p: dict[str, Any]) -> bool:
        waiting = container_status(p, "c")["state"].get("waiting", {})
        return waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff")

    p = await wait_pod(kube, ns, "noimage", pull_error, 30, "waiting with ErrImagePull")
    assert p["status"]["phase"] == "Pending"
    assert "registry.invalid/nothing:0" in container_status(p, "c")["state"]["waiting"]["message"]
