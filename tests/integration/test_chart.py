"""The Helm chart, with the real helm binary: lint and render with the defaults and with a values
file that sets every option, the schema names the field a wrong value is in, and the operator's
RBAC rules are exactly the verbs its code uses (read from src/etcdop)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.localcluster.binaries import K8S_VERSION, bin_path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "etcdop"
ALL_VALUES = CHART / "ci" / "all-values.yaml"
SRC = REPO / "src" / "etcdop"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_path("helm")), *args], capture_output=True, text=True,
                          timeout=60)


def render(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "etcdop", str(CHART), "--namespace", "etcdop-system",
               "--kube-version", K8S_VERSION.lstrip("v"), *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def leaves(tree: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_VALUES)]], ids=["defaults", "all-values"])
def test_helm_lint_is_clean(values: list[str]) -> None:
    out = helm("lint", "--strict", str(CHART), *values)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_the_all_values_file_sets_every_option_of_values_yaml() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    every = yaml.safe_load(ALL_VALUES.read_text())
    top_level_options = set(defaults)
    assert top_level_options == set(every)
    unset = {p for p in leaves(defaults)
             if not any(q == p or q.startswith(p + ".") for q in leaves(every))}
    assert not unset, f"options of values.yaml that ci/all-values.yaml does not set: {unset}"
    assert not [p for p in leaves(defaults) if p in set(leaves(every))
                and _at(defaults, p) == _at(every, p) and _at(defaults, p) not in ({}, [], "")
                and p not in _SAME_ON_PURPOSE], "every option is set to a non-default value"


# Hardening a values file must keep: the same in both files on purpose.
_SAME_ON_PURPOSE = {
    "metrics.service", "podDisruptionBudget.enabled", "podSecurityContext.runAsNonRoot",
    "podSecurityContext.seccompProfile.type", "securityContext.allowPrivilegeEscalation",
    "securityContext.readOnlyRootFilesystem", "securityContext.privileged",
    "securityContext.capabilities.drop", "livenessProbe.httpGet.path",
    "livenessProbe.httpGet.port", "readinessProbe.httpGet.path", "readinessProbe.httpGet.port",
    "grafanaDashboard.labels.grafana_dashboard",
}


def _at(tree: Any, path: str) -> Any:
    for k in path.split("."):
        tree = tree[k]
    return tree


def test_defaults_two_replicas_hardened_probed_with_a_budget() -> None:
    docs = render()
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "etcdop"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    port = c["ports"][0]
    assert f"--metrics-port={port['containerPort']}" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert c["args"][0] == "operator" and "command" not in c  # the image's ENTRYPOINT: etcdop
    assert f"--agent-image={c['image']}" in c["args"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()
    kinds = {d["kind"] for d in docs}
    assert "ServiceMonitor" not in kinds and "ConfigMap" not in kinds


def test_one_replica_renders_no_budget_that_would_block_every_drain() -> None:
    assert "PodDisruptionBudget" not in {d["kind"] for d in render("--set", "replicas=1")}


def test_all_values_render_every_optional_object() -> None:
    docs = render("-f", str(ALL_VALUES))
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.example/etcdop:0.1.0-rc1"
    assert "--namespace=etcd-prod" in c["args"] and "--lease-name=etcdop-leader" in c["args"]
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    board = one(docs, "ConfigMap")
    assert board["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(board["data"]["etcdop.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("etcdop_cluster_members", "etcd_server_leader_changes_seen_total",
                   "etcdop_backup_last_success_timestamp_seconds",
                   "etcdop_backup_duration_seconds_bucket", "etcdop_actions_total",
                   "etcdop_reconcile_errors_total"):
        assert metric in exprs
    # watchNamespace: namespaced rights in a Role there; the ClusterRole keeps only Nodes
    role = one(docs, "Role", "etcdop")
    assert role["metadata"]["namespace"] == "etcd-prod"
    cluster_role = one(docs, "ClusterRole")
    assert [r["resources"] for r in cluster_role["rules"]] == [["nodes"]]
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("replicas=0", "/replicas"),
        ("logLevel=loud", "/logLevel"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("metrics.port=70000", "/metrics/port"),
        ("watchNamespace=Not_A_Namespace", "/watchNamespace"),
        ("metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval"),
        ("replica=2", "'replica' not allowed"),
    ],
)
def test_a_wrong_value_fails_naming_its_field(setting: str, field: str) -> None:
    out = helm("template", "etcdop", str(CHART), "--kube-version", K8S_VERSION.lstrip("v"),
               "--set", setting)
    assert out.returncode != 0
    assert field in out.stderr, out.stderr


# -- RBAC: the rules are the verbs the code uses --------------------------------------------

_CALL = re.compile(
    r"\.(get|list|watch|create|delete|patch|apply|replace)\(\s*([A-Z][A-Z_]+)\b(.*?)\)", re.S
)
_VERB = {"apply": "patch", "replace": "update"}


def resource_constants() -> dict[str, Any]:
    """Every module-level Resource constant of the package (PODS, ETCDCLUSTERS, ...) by name, so
    a kind added anywhere is seen without editing this test."""
    import importlib
    import pkgutil

    import etcdop
    from etcdop.kube.client import Resource

    found: dict[str, Any] = {}
    for mod in pkgutil.walk_packages(etcdop.__path__, "etcdop."):
        if mod.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(mod.name)
        for name, value in vars(module).items():
            if isinstance(value, Resource) and name.isupper():
                assert found.get(name, value) == value, f"two Resources named {name}"
                found[name] = value
    return found


def used_permissions() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every Kubernetes call in src/etcdop, read from the code:
    informers (a controller's primary, owns, watches, stores) list and watch; direct calls by
    client method; status and finalizer helpers; Components are created and applied."""
    from etcdop.operator.etcdcluster.acting import _RESOURCES

    res = resource_constants()
    used: set[tuple[str, str, str]] = set()

    def add(name: str, verb: str, sub: str = "") -> None:
        if name not in res:  # a type or a class, not one of the Resource constants
            return
        r = res[name]
        used.add((r.group, r.plural + (f"/{sub}" if sub else ""), verb))

    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if path.name == "client.py" and path.parent.name == "kube":
            continue
        for m in re.finditer(r"(?:primary=|owns\(|Watch\(|\.store\()\s*([A-Z][A-Z_]+)\b", text):
            add(m[1], "list")
            add(m[1], "watch")
        for m in _CALL.finditer(text):
            if m[2] in res:
                status = 'subresource="status"' in m[3]
                add(m[2], _VERB.get(m[1], m[1]), "status" if status else "")
        for m in re.finditer(r"patch_status\(\s*[\w.]+,\s*([A-Z][A-Z_]+)", text):
            add(m[1], "patch", "status")
        for m in re.finditer(r"(?:add|remove)_finalizer\(\s*[\w.]+,\s*([A-Z][A-Z_]+)", text):
            add(m[1], "patch")
        for m in re.finditer(r"(?:Component|CreateOnce)\(\s*([A-Z][A-Z_]+)", text):
            add(m[1], "create")  # server-side apply of a missing object creates it
            add(m[1], "patch")
        if "_RESOURCES[" in text and ".create(" in text:
            for r in _RESOURCES.values():
                used.add((r.group, r.plural, "create"))
        if "LeaderElector" in text and path.name == "leader.py":
            for verb in ("get", "create", "update"):
                add("LEASES", verb)
    return used


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    return {(g, res, v) for r in rules for g in r["apiGroups"] for res in r["resources"]
            for v in r["verbs"]}


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespace=etcd-prod"]],
                         ids=["all-namespaces", "one-namespace"])
def test_the_role_grants_exactly_the_verbs_the_code_uses(values: list[str]) -> None:
    used, rules = used_permissions(), granted(render(*values))
    assert ("etcdop.io", "etcdclusters", "watch") in used  # the scan sees the code
    assert ("coordination.k8s.io", "leases", "update") in used
    assert not used - rules, f"used by the code, not granted: {sorted(used - rules)}"
    assert not rules - used, f"granted, never used by the code: {sorted(rules - used)}"
