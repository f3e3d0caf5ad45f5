"""The local node's pure pod rules: env resolution, container records, pod status, backoff."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.localcluster.node.pods import (
    ContainerRecord,
    EnvError,
    PodFacts,
    PodRecord,
    expand,
    pod_phase,
    pod_status,
    referenced_names,
    resolve_env,
    restart_delay,
    should_restart,
    status_digest,
)

FACTS = PodFacts(pod_ip="10.213.0.7", host_ip="10.213.0.1", node_name="local-1")
POD: dict[str, Any] = {
    "metadata": {"name": "web-0", "namespace": "demo", "uid": "u-1",
                 "labels": {"app": "web"}},
    "spec": {"serviceAccountName": "sa"},
}


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("cost $5", env) == "cost $5"


def test_env_resolves_fields_secrets_configmaps_in_order() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['app']"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
            {"name": "URL", "value": "http://$(IP):2379/$(POD)"},
        ],
    }
    env = resolve_env(POD, container, FACTS, {"s": {"password": "hunter2"}},
                      {"cm": {"k": "v"}}, {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin", "CM_k": "v", "POD": "web-0", "NS": "demo", "IP": "10.213.0.7",
        "NODE": "local-1", "APP": "web", "PASS": "hunter2", "URL": "http://10.213.0.7:2379/web-0",
    }


def test_env_missing_secret_is_a_config_error_unless_optional() -> None:
    need = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(EnvError, match='secret "s" not found'):
        resolve_env(POD, need, FACTS, {"s": None}, {}, {})
    with pytest.raises(EnvError, match='couldn\'t find key k in secret "s"'):
        resolve_env(POD, need, FACTS, {"s": {"other": "1"}}, {}, {})
    optional = {"env": [{"name": "X", "valueFrom": {
        "secretKeyRef": {"name": "s", "key": "k", "optional": True}}}]}
    assert resolve_env(POD, optional, FACTS, {"s": None}, {}, {}) == {}


def test_referenced_names_lists_what_env_needs() -> None:
    c = {"envFrom": [{"secretRef": {"name": "a"}}],
         "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}}]}
    assert referenced_names([c]) == ({"a"}, {"b"})


def main(name: str = "c", **kw: Any) -> ContainerRecord:
    return ContainerRecord(name=name, image="img", kind="main", **kw)


def test_phase_moves_from_pending_to_running_to_done() -> None:
    rec = PodRecord(uid="u", restart_policy="Never", main=[main()])
    assert pod_phase(rec) == "Pending"
    rec.main[0].running("local://1")
    assert pod_phase(rec) == "Running"
    rec.main[0].terminated(0)
    rec.main[0].wants_restart = False
    assert pod_phase(rec) == "Succeeded"
    rec.main[0].exit_code = 3
    assert pod_phase(rec) == "Failed"


def test_crash_looping_container_keeps_pod_running_with_reason_and_last_state() -> None:
    c = main()
    rec = PodRecord(uid="u", restart_policy="Always", main=[c], pod_ip="10.213.0.7")
    c.running("local://1")
    c.terminated(-9)
    c.next_attempt()  # the first restart is immediate
    c.running("local://2")
    c.terminated(-9)
    c.retire()  # the second waits: restartCount stays the dead run's attempt, as the kubelet's
    c.waiting("CrashLoopBackOff", "back-off 10s")
    status = pod_status(rec, {})
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    assert cs["lastState"]["terminated"]["signal"] == 9


def test_ready_needs_every_container_and_sidecar_ready_and_init_done() -> None:
    side = ContainerRecord(name="side", image="i", kind="sidecar")
    c = main()
    rec = PodRecord(uid="u", restart_policy="Always", init=[side], main=[c], pod_ip="10.0.0.1")
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}
    conds = {x["type"]: x["status"] for x in pod_status(rec, {"conditions": [scheduled]})[
        "conditions"]}
    assert conds == {"PodScheduled": "True", "PodReadyToStartContainers": "True",
                     "Initialized": "False", "ContainersReady": "False", "Ready": "False"}
    side.running("s")
    side.started = True
    side.ready = True
    c.running("c")
    c.ready = True
    conds = {x["type"]: x["status"] for x in pod_status(rec, {})["conditions"]}
    assert conds["Initialized"] == conds["Ready"] == "True"
    side.ready = False
    conds = {x["type"]: x["status"] for x in pod_status(rec, {})["conditions"]}
    assert conds["Ready"] == "False"


def test_transition_time_is_kept_while_the_status_stays() -> None:
    rec = PodRecord(uid="u", restart_policy="Always", main=[main()])
    before = {"conditions": [{"type": "Ready", "status": "False",
                              "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    ready = next(c for c in pod_status(rec, before)["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_backoff_is_immediate_then_doubles_to_five_minutes() -> None:
    assert [restart_delay(n) for n in range(1, 8)] == [0, 10, 20, 40, 80, 160, 300]


@pytest.mark.parametrize(
    ("kind", "policy", "code", "expected"),
    [
        ("main", "Always", 0, True), ("main", "OnFailure", 0, False),
        ("main", "OnFailure", 1, True), ("main", "Never", 1, False),
        ("init", "Always", 0, False), ("init", "Always", 1, True), ("init", "Never", 1, False),
        ("sidecar", "Never", 0, True),
    ],
)
def test_restart_policy(kind: Any, policy: str, code: int, expected: bool) -> None:
    assert should_restart(kind, policy, code) is expected


def test_status_digest_ignores_times_but_sees_what_others_changed() -> None:
    c = main()
    rec = PodRecord(uid="u", restart_policy="Always", main=[c], pod_ip="10.213.0.7")
    c.running("local://1")
    c.started = c.ready = True
    ours = pod_status(rec, {})
    later = pod_status(rec, ours)
    assert status_digest(later) == status_digest(ours)
    # the node-lifecycle controller marks the pod unready while its Node is silent
    theirs = {**ours, "conditions": [
        {**x, "status": "False"} if x["type"] == "Ready" else x for x in ours["conditions"]]}
    assert status_digest(pod_status(rec, theirs)) != status_digest(theirs)
