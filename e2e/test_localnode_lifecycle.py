"""Pod lifecycle details of the local node: env and API-backed volumes, init containers in order,
liveness restarts, crash-loop backoff and one-shot pods."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.node import kubelet
from e2e.localcluster.node.fixtures import LocalNode
from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.testing import (
    container_status,
    create,
    delete_namespace,
    eventually,
    new_namespace,
    wait_pod,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.imitation]


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


async def test_fallback_to_logs_on_error_puts_the_log_tail_in_the_message(
        kube: Kube, ns: str, web_image: str) -> None:
    """The operator reads etcd's fatal error (data loss) from lastState.terminated.message."""
    fatal = "panic: tocommit(12) is out of range [lastIndex(0)]"
    script = f'for i in $(seq 1 100); do echo "line $i"; done; echo "{fatal}"; exit 2'
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loud", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": web_image,
                                 "command": ["/bin/sh", "-c", script],
                                 "terminationMessagePolicy": "FallbackToLogsOnError"}]},
    })

    def backing_off(p: dict[str, Any]) -> bool:
        cs = container_status(p, "c")
        return bool(cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff")

    p = await wait_pod(kube, ns, "loud", backing_off, 60, "CrashLoopBackOff")
    cs = container_status(p, "c")
    # the first restart is immediate, the second waits: as the kubelet, restartCount counts the
    # containers created after the first, so it is 1 while the second dead one waits
    assert cs["restartCount"] == 1
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 2 and last["reason"] == "Error"
    message = last["message"]
    assert message.endswith(fatal + "\n")
    lines = message.splitlines()
    assert len(lines) == 80 and lines[0] == "line 22"  # the last 80 lines
    assert len(message.encode()) <= 2048


async def test_termination_message_file_is_the_message(kube: Kube, ns: str,
                                                       web_image: str) -> None:
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bye", "namespace": ns},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "default-path", "image": web_image,
             "command": ["/bin/sh", "-c", "printf 'custom bye' > /dev/termination-log; exit 1"]},
            {"name": "own-path", "image": web_image,
             "terminationMessagePath": "/var/run/last-words",
             "terminationMessagePolicy": "FallbackToLogsOnError",
             "command": ["/bin/sh", "-c", "echo noise; printf 'my words' > /var/run/last-words;"
                         " exit 3"]},
            {"name": "silent", "image": web_image, "command": ["/bin/sh", "-c", "echo x; exit 4"]},
        ]},
    })
    p = await wait_pod(kube, ns, "bye", phase_is("Failed"), 60, "Failed")
    messages = {c: container_status(p, c)["state"]["terminated"].get("message")
                for c in ("default-path", "own-path", "silent")}
    assert messages == {"default-path": "custom bye", "own-path": "my words", "silent": None}


async def test_env_from_an_annotation_is_read_again_at_each_start(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    """The kubelet builds a container's env from the pod as it is when it creates the container:
    the operator changes a member's start mode by patching an annotation."""
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "moody", "namespace": ns, "annotations": {"x": "one"}},
        "spec": {"containers": [{
            "name": "c", "image": web_image,
            "command": ["/bin/sh", "-c", "echo state=$(STATE) $STATE; exit 1"],
            "env": [{"name": "STATE", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['x']"}}}],
        }]},
    })

    def crashed(p: dict[str, Any]) -> bool:
        return bool(container_status(p, "c")["lastState"].get("terminated"))

    await wait_pod(kube, ns, "moody", crashed, 60, "crashed once")
    first_run = kubelet.pod_dirs(local_node.state_dir, ns, "moody")[0] / "containers/c/0.log"
    assert first_run.read_text() == "state=one one\n"
    await kube.merge_patch(f"/api/v1/namespaces/{ns}/pods/moody",
                           {"metadata": {"annotations": {"x": "two"}}})

    async def sees_two() -> bool:
        return local_node.pod_logs(ns, "moody", "c") == "state=two two\n"

    await eventually(sees_two, 90, "a run that sees the patched annotation")
