"""Pod lifecycle details of the local node: env and API-backed volumes, init containers in order,
liveness restarts, crash-loop backoff and one-shot pods."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.node.fixtures import LocalNode
from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.testing import (
    container_status,
    create,
    delete_namespace,
    new_namespace,
    wait_pod,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node]


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> Kube:
    return Kube(kube_api)


@pytest.fixture
async def ns(kube: Kube, local_node: LocalNode) -> AsyncIterator[str]:
    name = await new_namespace(kube, "life")
    yield name
    await delete_namespace(kube, name)


def phase_is(phase: str) -> Any:
    def check(p: dict[str, Any]) -> bool:
        return bool(p["status"].get("phase") == phase)

    return check


async def test_env_volumes_and_init_containers(kube: Kube, ns: str, web_image: str,
                                               local_node: LocalNode) -> None:
    await create(kube, {"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "creds", "namespace": ns},
                        "data": {"password": base64.b64encode(b"s3cret").decode()}})
    await create(kube, {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "settings", "namespace": ns},
                        "data": {"mode": "fast", "conf.ini": "[x]\na=1\n"}})
    script = "; ".join([
        'echo "env $POD_NAME $POD_NS $NODE $MODE $PASSWORD $GREETING"',
        'echo "sa $(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"',
        'test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-ok',
        'grep -q "BEGIN CERTIFICATE" /var/run/secrets/kubernetes.io/serviceaccount/ca.crt'
        " && echo ca-ok",
        'echo "files $(cat /etc/app/settings.ini | tr "\\n" " ")$(cat /etc/creds/password)"',
        'echo "downward $(cat /etc/info/name)"',
        'echo "init $(cat /work/order)"',
        'echo "api $KUBERNETES_SERVICE_HOST"',
    ])
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "envy", "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {"name": f"init-{i}", "image": web_image,
                 "command": ["/bin/sh", "-c", f"echo -n {i} >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
                for i in (1, 2)
            ],
            "containers": [{
                "name": "c", "image": web_image, "command": ["/bin/sh", "-c", script],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS",
                     "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                       "key": "mode"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                        "key": "password"}}},
                    {"name": "GREETING", "value": "hi-$(POD_NAME)"},
                ],
                "volumeMounts": [
                    {"name": "work", "mountPath": "/work"},
                    {"name": "settings", "mountPath": "/etc/app"},
                    {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                    {"name": "info", "mountPath": "/etc/info"},
                ],
            }],
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "settings", "configMap": {
                    "name": "settings", "items": [{"key": "conf.ini", "path": "settings.ini"}]}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            ],
        },
    })
    p = await wait_pod(kube, ns, "envy", phase_is("Succeeded"), 90, "Succeeded")
    node = p["spec"]["nodeName"]
    lines = local_node.pod_logs(ns, "envy", "c").splitlines()
    assert lines == [
        f"env envy {ns} {node} fast s3cret hi-envy",
        f"sa {ns}",
        "token-ok",
        "ca-ok",
        "files [x] a=1 s3cret",
        "downward envy",
        "init 12",
        "api 10.213.0.1",
    ]
    inits = p["status"]["initContainerStatuses"]
    assert [c["state"]["terminated"]["reason"] for c in inits] == ["Completed", "Completed"]


async def test_failing_liveness_probe_restarts_the_container(kube: Kube, ns: str,
                                                            web_image: str) -> None:
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lively", "namespace": ns},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": web_image,
            "command": ["/bin/sh", "-c", "exec sleep 3600"],
            "livenessProbe": {"exec": {"command": ["test", "-f", "/nonexistent"]},
                              "periodSeconds": 1, "failureThreshold": 2},
        }]},
    })

    def restarted(p: dict[str, Any]) -> bool:
        return int(container_status(p, "c")["restartCount"]) >= 1

    p = await wait_pod(kube, ns, "lively", restarted, 60, "restarted by its liveness probe")
    last = container_status(p, "c")["lastState"]["terminated"]
    assert last["message"] == "liveness probe failed"


async def test_crashing_container_goes_into_crash_loop_backoff(kube: Kube, ns: str,
                                                               web_image: str) -> None:
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crashy", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": web_image,
                                 "command": ["/bin/sh", "-c", "exit 3"]}]},
    })

    def backing_off(p: dict[str, Any]) -> bool:
        cs = container_status(p, "c")
        return bool(cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff")

    p = await wait_pod(kube, ns, "crashy", backing_off, 60, "CrashLoopBackOff")
    cs = container_status(p, "c")
    assert cs["restartCount"] >= 1
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert p["status"]["phase"] == "Running"
